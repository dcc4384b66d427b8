package main

import (
	"errors"
	"fmt"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"atende/controlplane"
)

// tenantCancelDeleteCmd is `ctl tenant cancel-delete KEY`.
func (a *app) tenantCancelDeleteCmd() *cobra.Command {
	var noWait bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "cancel-delete KEY",
		Short: "Cancel a pending deletion: the tenant goes back to live or suspended",
		Long: "Cancel the deletion of a tenant within its grace period: it goes back to the state it had when\n" +
			"its deletion was requested (live, with its cell started again, or suspended) and the command waits\n" +
			"until it is there. Once the teardown has begun it can no longer be cancelled (conflict).",
		Example: "  ctl tenant cancel-delete acme",
		Args:    cobra.ExactArgs(1),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			start := time.Now()
			t, err := c.CancelDeletion(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if !noWait {
				fmt.Fprintf(a.errOut, "restoring %s… ", t.Key)
				settled := []controlplane.State{controlplane.StateLive, controlplane.StateSuspended}
				failed := []controlplane.State{controlplane.StateResumeFailed, controlplane.StateCreationFailed}
				t, err = a.poll(cmd.Context(), c, t, start, timeout, func(t *controlplane.Tenant) (bool, error) {
					took := time.Since(start).Seconds()
					switch {
					case slices.Contains(settled, t.State):
						fmt.Fprintf(a.errOut, "%s in %.2fs\n", t.State, took)
						return true, nil
					case slices.Contains(failed, t.State):
						fmt.Fprintf(a.errOut, "%s after %.2fs\n", t.State, took)
						return true, &cliError{codeFailed, fmt.Sprintf("tenant %s is %s: %s (see `ctl cell logs %s`)", t.Key, t.State, t.StateReason, t.Key)}
					}
					return false, nil
				}, func(t *controlplane.Tenant) string {
					return fmt.Sprintf("tenant %s is still %s after %s (see `ctl tenant get %s`)", t.Key, t.State, timeout, t.Key)
				})
				if err != nil {
					return err
				}
			}
			return a.printTenant(t)
		}),
	}
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "return as soon as the cancellation is recorded")
	cmd.Flags().DurationVar(&timeout, "timeout", a.defaultTimeout, "how long to wait")
	return cmd
}

// sweepCmd is `ctl sweep --dry-run`.
func (a *app) sweepCmd() *cobra.Command {
	dryRun := true
	cmd := &cobra.Command{
		Use:   "sweep --dry-run",
		Short: "List resources left behind: of tenants the registry does not know, or of deleted ones",
		Long: "List what Atende created for tenants (databases t_<id>, object prefixes t/<id>/, object-store\n" +
			"credentials, process-driver cell directories, docker containers and networks labelled\n" +
			"atende.managed) that belongs to no tenant of the registry or to a deleted tenant. It only lists:\n" +
			"nothing is ever deleted by a sweep (--dry-run is the only mode). The exit code is 0 either way.",
		Example: "  ctl sweep --dry-run\n  ctl sweep --dry-run --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !dryRun {
				return errors.New("a sweep only lists (--dry-run): remove what it reports by hand")
			}
			return runE(func(cmd *cobra.Command, args []string) error {
				c, err := a.client()
				if err != nil {
					return err
				}
				report, err := c.Sweep(cmd.Context())
				if err != nil {
					return err
				}
				if a.jsonOut {
					return a.printJSON(report)
				}
				if len(report.Orphans) == 0 {
					fmt.Fprintf(a.out, "Nothing left behind (looked at: %s).\n", joinOrNone(report.Kinds))
					return nil
				}
				w := tabwriter.NewWriter(a.out, 0, 0, 2, ' ', 0)
				fmt.Fprintln(w, "KIND\tNAME\tTENANT\tREASON")
				for _, o := range report.Orphans {
					reason := "unknown tenant"
					if o.Reason == controlplane.OrphanDeletedTenant {
						reason = "tenant deleted"
						if o.TenantKey != "" {
							reason += " (was " + o.TenantKey + ")"
						}
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", o.Kind, o.Name, o.TenantID, reason)
				}
				if err := w.Flush(); err != nil {
					return err
				}
				fmt.Fprintf(a.out, "%d left behind (dry run: nothing was deleted).\n", len(report.Orphans))
				return nil
			})(cmd, args)
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", true, "only list (the only mode)")
	return cmd
}

// joinOrNone joins kinds with ", ", or says "none".
func joinOrNone(kinds []string) string {
	if len(kinds) == 0 {
		return "none"
	}
	out := kinds[0]
	for _, k := range kinds[1:] {
		out += ", " + k
	}
	return out
}
