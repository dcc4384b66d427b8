package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"atende/controlplane"
	"atende/controlplane/api"
	"atende/controlplane/transfer"
)

// transferClient is the API client for exports and imports: without the 30 s timeout of the
// other commands (a large tenant takes longer); Ctrl-C still cancels.
func (a *app) transferClient() (*api.Client, error) {
	c, err := a.client()
	if err != nil {
		return nil, err
	}
	c.HTTP = &http.Client{}
	return c, nil
}

// isTerminal reports whether v is a terminal (a character device).
func isTerminal(v any) bool {
	f, ok := v.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func (a *app) tenantExportCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "export KEY [-o FILE]",
		Short: "Export a tenant's data (database and files) as one file",
		Long: "Export everything a tenant has — users (with their password hashes), chats, messages, notes,\n" +
			"settings (with the webhook secret), departments, canned responses, offline messages, the audit log\n" +
			"and the attachments' files — as one gzip'd JSON-lines file (format: README, \"Exporting and\n" +
			"importing a tenant\"). Keep the file as secret as the database. It is written to stdout (never\n" +
			"to a terminal) or, with -o, to FILE (mode 0600, complete or not at all); the summary goes to stderr.\n" +
			"The export is recorded in the tenant's events and audit log. Suspend the tenant first for an export\n" +
			"of one instant; a live tenant's export is consistent but a moment wide.",
		Example: "  ctl tenant export acme > acme.atende.jsonl.gz\n  ctl tenant export acme -o acme.atende.jsonl.gz",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (output == "" || output == "-") && isTerminal(a.out) {
				return fmt.Errorf("refusing to write an export to a terminal: redirect stdout (> FILE) or pass -o FILE")
			}
			return runE(func(cmd *cobra.Command, args []string) error {
				c, err := a.transferClient()
				if err != nil {
					return err
				}
				w, done := io.Writer(a.out), func(ok bool) error { return nil }
				if output != "" && output != "-" {
					f, err := os.CreateTemp(filepath.Dir(output), "."+filepath.Base(output)+".part-*")
					if err != nil {
						return err
					}
					w, done = f, func(ok bool) error {
						cerr := f.Close()
						if !ok || cerr != nil {
							os.Remove(f.Name())
							return cerr
						}
						return os.Rename(f.Name(), output)
					}
				}
				h, n, err := c.ExportTenant(cmd.Context(), args[0], w)
				if derr := done(err == nil); err == nil && derr != nil {
					err = derr
				}
				if err != nil {
					return err
				}
				if a.jsonOut && output != "" && output != "-" {
					return a.printJSON(map[string]any{"file": output, "bytes": n, "header": h})
				}
				fmt.Fprintf(a.errOut, "Exported %s (%s): %s; %d bytes.\n", h.Tenant.Key, h.Tenant.ID, h.Summary(), n)
				return nil
			})(cmd, args)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "write the export to FILE instead of stdout")
	return cmd
}

func (a *app) tenantImportCmd() *cobra.Command {
	var input, fromMongo, database string
	var compat bool
	cmd := &cobra.Command{
		Use:   "import KEY [-f FILE | --from-mongo URI [--database DB] [--compat]]",
		Short: "Import an export (or the single-tenant app's database) into a tenant",
		Long: "Import a file made by `ctl tenant export` (from stdin, or -f FILE) into the tenant KEY, which must be\n" +
			"live or suspended and have no chats (create a new tenant for it). Every tenantId becomes KEY's;\n" +
			"the file is checked completely first: a bad file is refused and nothing is written. Users of KEY\n" +
			"with an email from the file (such as the admin created with the tenant) are replaced, so the\n" +
			"exported users log in with their old passwords.\n\n" +
			"With --from-mongo, migrate the database of the original single-tenant app instead: the control\n" +
			"plane connects to URI (the database is --database, or the URI's path) and maps its users, chats and\n" +
			"messages (README, \"Migrating from the single-tenant app\"), reporting what it skipped and why.\n" +
			"With --compat as well, the tenant's cell is then switched to compat tenancy (see `ctl tenant\n" +
			"set-tenancy`): the old clients keep working on the old host while they move to KEY's host.",
		Example: "  ctl tenant create acme2 --name \"Acme\" --admin-email admin@acme.test\n" +
			"  ctl tenant import acme2 < acme.atende.jsonl.gz\n" +
			"  ctl tenant import acme --from-mongo mongodb://legacy-host:27017/livechat\n" +
			"  ctl tenant import acme --from-mongo mongodb://legacy-host:27017/livechat --compat",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case fromMongo != "" && input != "":
				return fmt.Errorf("pass either -f FILE or --from-mongo URI, not both")
			case database != "" && fromMongo == "":
				return fmt.Errorf("--database goes with --from-mongo")
			case compat && fromMongo == "":
				return fmt.Errorf("--compat goes with --from-mongo")
			case fromMongo == "" && (input == "" || input == "-") && isTerminal(a.in):
				return fmt.Errorf("pipe an export into stdin (< FILE) or pass -f FILE")
			}
			return runE(func(cmd *cobra.Command, args []string) error {
				c, err := a.transferClient()
				if err != nil {
					return err
				}
				// Check the tenant first: a wrong key or state fails before any upload.
				t, err := c.GetTenant(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				if t.State != controlplane.StateLive && t.State != controlplane.StateSuspended {
					return controlplane.Errorf(controlplane.EConflict, "tenant %s is %s: import into a live or suspended tenant", t.Key, t.State)
				}
				var rep *transfer.Report
				if fromMongo != "" {
					fmt.Fprintf(a.errOut, "migrating into %s… ", t.Key)
					rep, err = c.ImportLegacy(cmd.Context(), t.ID, api.LegacyImportRequest{FromMongo: fromMongo, Database: database})
				} else {
					r, size := a.in, int64(-1)
					if input != "" && input != "-" {
						f, err := os.Open(input)
						if err != nil {
							return err
						}
						defer f.Close()
						if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
							size = fi.Size()
						}
						r = f
					}
					fmt.Fprintf(a.errOut, "importing into %s… ", t.Key)
					rep, err = c.ImportTenant(cmd.Context(), t.ID, r, size)
				}
				if err != nil {
					fmt.Fprintln(a.errOut, "failed")
					return err
				}
				fmt.Fprintln(a.errOut, "done")
				if compat {
					if err := a.switchToCompat(cmd, c, t); err != nil {
						return err
					}
				}
				if a.jsonOut {
					return a.printJSON(rep)
				}
				return a.printReport(rep)
			})(cmd, args)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&input, "file", "f", "", "read the export from FILE instead of stdin")
	f.StringVar(&fromMongo, "from-mongo", "", "migrate the single-tenant app's MongoDB database at this mongodb:// URI")
	f.StringVar(&database, "database", "", "the legacy database (default: the one in the --from-mongo URI)")
	f.BoolVar(&compat, "compat", false, "after the migration, serve the old clients without tenant context (compat tenancy) until `ctl tenant set-tenancy KEY strict`")
	return cmd
}

// printReport prints an import's report as text.
func (a *app) printReport(rep *transfer.Report) error {
	w := tabwriter.NewWriter(a.out, 0, 0, 2, ' ', 0)
	from := "the single-tenant app's database"
	if rep.From != nil {
		from = fmt.Sprintf("the export of %s (%s)", rep.From.Key, rep.From.ID)
	} else if rep.Legacy != nil {
		from += " " + rep.Legacy.Source
	}
	fmt.Fprintf(w, "Imported into %s (%s) from %s.\n", rep.Tenant.Key, rep.Tenant.ID, from)
	fmt.Fprintf(w, "  Written\t%s\n", rep.Summary())
	if len(rep.ReplacedUsers) > 0 {
		fmt.Fprintf(w, "  Replaced users\t%s\n", strings.Join(rep.ReplacedUsers, ", "))
	}
	if l := rep.Legacy; l != nil {
		for _, row := range []struct {
			name string
			c    transfer.LegacyCount
		}{{"users", l.Users}, {"chats", l.Chats}, {"messages", l.Messages}} {
			fmt.Fprintf(w, "  Legacy %s\tread %d, imported %d\n", row.name, row.c.Read, row.c.Imported)
		}
		fmt.Fprintf(w, "  Skipped\t%d\n", l.SkippedTotal)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if l := rep.Legacy; l != nil {
		for i, s := range l.Skipped {
			if i == 20 {
				fmt.Fprintf(a.out, "    … %d more (--json lists up to 1000)\n", l.SkippedTotal-20)
				break
			}
			fmt.Fprintf(a.out, "    skipped %s %s: %s\n", s.Collection, s.ID, s.Reason)
		}
		for _, s := range l.Changed {
			fmt.Fprintf(a.out, "    changed %s %s: %s\n", s.Collection, s.ID, s.Reason)
		}
	}
	return nil
}
