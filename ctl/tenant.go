package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"atende/controlplane"
	"atende/controlplane/api"
)

func (a *app) tenantCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "tenant", Short: "Create, inspect, suspend, resume, delete, export and import tenants; rotate their keys", Args: cobra.ArbitraryArgs, RunE: group}
	cmd.AddCommand(a.tenantCreateCmd(), a.tenantListCmd(), a.tenantGetCmd(), a.tenantEventsCmd(),
		a.tenantSuspendCmd(), a.tenantResumeCmd(), a.tenantDeleteCmd(), a.tenantRotateKeysCmd())
	cmd.AddCommand(a.tenantExportCmd(), a.tenantImportCmd())
	cmd.AddCommand(a.tenantCancelDeleteCmd())
	cmd.AddCommand(a.tenantSetTenancyCmd())
	return cmd
}

func (a *app) tenantCreateCmd() *cobra.Command {
	var req api.CreateTenantRequest
	var noWait bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "create KEY --name NAME --admin-email EMAIL",
		Short: "Create a tenant and wait until it is live",
		Long: "Create a tenant served at <KEY>.<domain> and wait until it is live (progress on stderr).\n" +
			"The admin password is generated unless --admin-password is given; it is printed only once.",
		Example: `  ctl tenant create acme --name "Acme" --admin-email admin@acme.test
  ctl tenant create acme --name "Acme" --admin-email admin@acme.test --allowed-origin https://www.acme.com --json`,
		Args: cobra.ExactArgs(1),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			req.Key = args[0]
			start := time.Now()
			created, err := c.CreateTenant(cmd.Context(), req)
			if err != nil {
				return err
			}
			t := created.Tenant
			if !noWait {
				fmt.Fprintf(a.errOut, "creating %s… ", t.Key)
				if t, err = a.waitFor(cmd.Context(), c, t, start, timeout, controlplane.StateLive, controlplane.StateCreationFailed); err != nil {
					return err
				}
			}
			if a.jsonOut {
				return a.printJSON(map[string]any{"id": t.ID, "key": t.Key, "url": t.URL, "state": t.State, "admin": created.Admin})
			}
			w := tabwriter.NewWriter(a.out, 0, 0, 2, ' ', 0)
			if t.State == controlplane.StateLive {
				fmt.Fprintf(w, "Tenant %s is live.\n", t.Key)
			} else {
				fmt.Fprintf(w, "Tenant %s is %s.\n", t.Key, t.State)
			}
			fmt.Fprintf(w, "  URL\t%s\n", t.URL)
			fmt.Fprintf(w, "  Console\t%s/console\n", t.URL)
			fmt.Fprintf(w, "  Widget demo\t%s/widget-demo\n", t.URL)
			fmt.Fprintf(w, "  Admin email\t%s\n", created.Admin.Email)
			fmt.Fprintf(w, "  Admin password\t%s\t(shown only once)\n", created.Admin.Password)
			fmt.Fprintf(w, "  Tenant id\t%s\n", t.ID)
			return w.Flush()
		}),
	}
	f := cmd.Flags()
	f.StringVar(&req.Name, "name", "", "display name (required)")
	f.StringArrayVar(&req.AllowedOrigins, "allowed-origin", nil, "extra origin allowed to embed the widget, e.g. https://www.acme.com (repeatable)")
	f.StringVar(&req.Plan, "plan", "", "plan: free (default), pro or enterprise")
	f.BoolVar(&req.Dedicated, "dedicated", false, "dedicated tier: its own database server, bucket and network (docker driver only)")
	f.StringVar(&req.AdminEmail, "admin-email", "", "email of the first tenant-admin (required)")
	f.StringVar(&req.AdminPassword, "admin-password", "", "password of the first tenant-admin (default: generated)")
	f.BoolVar(&noWait, "no-wait", false, "return as soon as the creation is recorded")
	f.DurationVar(&timeout, "timeout", a.defaultTimeout, "how long to wait for the tenant to be live")
	_ = cmd.MarkFlagRequired("name")
	_ = cmd.MarkFlagRequired("admin-email")
	return cmd
}

// waitFor polls the tenant every pollInterval until it reaches one of states (the first one is
// success, the others are failures), printing the outcome on stderr after the "<verb> <key>… "
// prefix the caller wrote.
func (a *app) waitFor(ctx context.Context, c *api.Client, t *controlplane.Tenant, start time.Time, timeout time.Duration, states ...controlplane.State) (*controlplane.Tenant, error) {
	return a.poll(ctx, c, t, start, timeout, func(t *controlplane.Tenant) (bool, error) {
		if !slices.Contains(states, t.State) {
			return false, nil
		}
		took := time.Since(start).Seconds()
		if t.State == states[0] {
			fmt.Fprintf(a.errOut, "%s in %.2fs\n", t.State, took)
			return true, nil
		}
		fmt.Fprintf(a.errOut, "%s after %.2fs\n", t.State, took)
		return true, &cliError{codeFailed, fmt.Sprintf("tenant %s is %s: %s (see `ctl cell logs %s`)", t.Key, t.State, t.StateReason, t.Key)}
	}, func(t *controlplane.Tenant) string {
		return fmt.Sprintf("tenant %s is still %s after %s (see `ctl tenant get %s`)", t.Key, t.State, timeout, t.Key)
	})
}

// poll re-reads the tenant every pollInterval until done reports true (returning its error) or
// timeout has passed since start (returning a timeout error with stalled's message). It prints
// "timed out" or "interrupted" on stderr when it gives up.
func (a *app) poll(ctx context.Context, c *api.Client, t *controlplane.Tenant, start time.Time, timeout time.Duration,
	done func(*controlplane.Tenant) (bool, error), stalled func(*controlplane.Tenant) string) (*controlplane.Tenant, error) {
	deadline := start.Add(timeout)
	for {
		if ok, err := done(t); ok {
			return t, err
		}
		if time.Now().After(deadline) {
			fmt.Fprintln(a.errOut, "timed out")
			return t, &cliError{codeTimeout, stalled(t)}
		}
		select {
		case <-ctx.Done():
			fmt.Fprintln(a.errOut, "interrupted")
			return t, ctx.Err()
		case <-time.After(a.pollInterval):
		}
		next, err := c.GetTenant(ctx, t.ID)
		if err != nil {
			fmt.Fprintln(a.errOut)
			return t, err
		}
		t = next
	}
}

func (a *app) tenantListCmd() *cobra.Command {
	var opts api.ListOptions
	var states []string
	cmd := &cobra.Command{
		Use: "list", Short: "List tenants (deleted ones with --all)", Args: cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			for _, s := range states {
				opts.States = append(opts.States, controlplane.State(s))
			}
			ts, err := c.ListTenants(cmd.Context(), opts)
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(map[string]any{"tenants": ts})
			}
			w := tabwriter.NewWriter(a.out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(w, "KEY\tSTATE\tPLAN\tURL\tID\tCREATED")
			for _, t := range ts {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", t.Key, t.State, t.Plan, t.URL, t.ID, t.CreatedAt.Format(time.RFC3339))
			}
			return w.Flush()
		}),
	}
	cmd.Flags().BoolVar(&opts.All, "all", false, "include deleted tenants")
	cmd.Flags().StringSliceVar(&states, "state", nil, "only tenants in these states (comma-separated)")
	return cmd
}

func (a *app) tenantGetCmd() *cobra.Command {
	return &cobra.Command{
		Use: "get KEY", Short: "Show a tenant (by key or id)", Args: cobra.ExactArgs(1),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			t, err := c.GetTenant(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.printTenant(t)
		}),
	}
}

// printTenant prints a tenant as JSON or as aligned fields.
func (a *app) printTenant(t *controlplane.Tenant) error {
	if a.jsonOut {
		return a.printJSON(t)
	}
	w := tabwriter.NewWriter(a.out, 0, 0, 2, ' ', 0)
	state := string(t.State)
	if t.StateReason != "" {
		state += " (" + t.StateReason + ")"
	}
	rows := [][2]string{
		{"Key", t.Key}, {"Name", t.Name}, {"ID", t.ID}, {"State", state}, {"URL", t.URL},
		{"Plan", t.Plan}, {"Tier", t.Tier}, {"Dedicated", fmt.Sprint(t.Dedicated)},
		{"Tenancy", t.Tenancy}, {"Allowed origins", strings.Join(t.AllowedOrigins, ", ")},
		{"Created", t.CreatedAt.Format(time.RFC3339)}, {"Updated", t.UpdatedAt.Format(time.RFC3339)},
		{"Cell", fmt.Sprintf("%s %s", t.Cell.Driver, t.Cell.Address)}, {"Database", t.Cell.Database}, {"S3 prefix", t.Cell.S3Prefix},
	}
	if t.DeleteAt != nil {
		rows = append(rows, [2]string{"Delete at", t.DeleteAt.Format(time.RFC3339)})
	}
	for _, r := range rows {
		fmt.Fprintf(w, "%s\t%s\n", r[0], r[1])
	}
	return w.Flush()
}

func (a *app) tenantEventsCmd() *cobra.Command {
	return &cobra.Command{
		Use: "events KEY", Short: "Show a tenant's lifecycle events", Args: cobra.ExactArgs(1),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			evs, err := c.TenantEvents(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(map[string]any{"events": evs})
			}
			w := tabwriter.NewWriter(a.out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(w, "SEQ\tAT\tFROM\tTO\tREASON")
			for _, e := range evs {
				from := string(e.From)
				if from == "" {
					from = "-"
				}
				fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\n", e.Seq, e.At.Format(time.RFC3339), from, e.To, e.Reason)
			}
			return w.Flush()
		}),
	}
}

// lifecycleCmd builds suspend and resume: record the intent, then wait for the settled state.
func (a *app) lifecycleCmd(use, short, verb string, call func(*api.Client, context.Context, string) (*controlplane.Tenant, error), states ...controlplane.State) *cobra.Command {
	var noWait bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use: use, Short: short, Args: cobra.ExactArgs(1),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			start := time.Now()
			t, err := call(c, cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if !noWait {
				fmt.Fprintf(a.errOut, "%s %s… ", verb, t.Key)
				if t, err = a.waitFor(cmd.Context(), c, t, start, timeout, states...); err != nil {
					return err
				}
			}
			return a.printTenant(t)
		}),
	}
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "return as soon as the request is recorded")
	cmd.Flags().DurationVar(&timeout, "timeout", a.defaultTimeout, "how long to wait")
	return cmd
}

func (a *app) tenantSuspendCmd() *cobra.Command {
	return a.lifecycleCmd("suspend KEY", "Suspend a tenant: stop its cell, its host shows the paused page", "suspending",
		(*api.Client).SuspendTenant, controlplane.StateSuspended)
}

func (a *app) tenantResumeCmd() *cobra.Command {
	return a.lifecycleCmd("resume KEY", "Resume a suspended tenant (or cancel a pending deletion)", "resuming",
		(*api.Client).ResumeTenant, controlplane.StateLive, controlplane.StateResumeFailed)
}

func (a *app) tenantDeleteCmd() *cobra.Command {
	var now bool
	cmd := &cobra.Command{
		Use:   "delete KEY",
		Short: "Delete a tenant after the grace period (at once with --now)",
		Long: "Delete a tenant: its cell stops and its host shows the paused page at once, and after the control\n" +
			"plane's grace period (ATENDE_DELETE_GRACE, default 24h) its route, cell, database, files and\n" +
			"credentials are removed, in that order, each step recorded in `ctl tenant events KEY`; then the key\n" +
			"is free. `ctl tenant cancel-delete KEY` cancels within the grace period. With --now the teardown\n" +
			"starts immediately.",
		Args: cobra.ExactArgs(1),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			question := fmt.Sprintf("Delete tenant %s?", args[0])
			if now {
				question = fmt.Sprintf("Delete tenant %s and all its data now? This cannot be undone.", args[0])
			}
			if err := a.confirm(question); err != nil {
				return err
			}
			t, err := c.DeleteTenant(cmd.Context(), args[0], now)
			if err != nil {
				return err
			}
			if t.State == controlplane.StateDeletionPending && t.DeleteAt != nil && time.Until(*t.DeleteAt) > 0 {
				fmt.Fprintf(a.errOut, "tenant %s will be torn down at %s; `ctl tenant cancel-delete %s` cancels until then\n",
					t.Key, t.DeleteAt.Format(time.RFC3339), t.Key)
			}
			return a.printTenant(t)
		}),
	}
	cmd.Flags().BoolVar(&now, "now", false, "skip the grace period")
	return cmd
}

func (a *app) tenantRotateKeysCmd() *cobra.Command {
	var noWait bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "rotate-keys KEY",
		Short: "Give a tenant's cell a new token-signing key without logging anyone out",
		Long: "Rotate the Ed25519 key the tenant's cell signs tokens with: new tokens carry a new kid, and tokens\n" +
			"signed with the old key stay valid until they expire (the old key stays in the cell's JWKS).\n" +
			"The cell of a live tenant restarts with the new key (the tenant stays live); the command waits\n" +
			"until it is healthy again and prints the new kid. A suspended tenant gets the key when resumed.",
		Example: "  ctl tenant rotate-keys acme",
		Args:    cobra.ExactArgs(1),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			start := time.Now()
			t, err := c.RotateKeys(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if !noWait && t.State == controlplane.StateLive {
				fmt.Fprintf(a.errOut, "restarting the cell of %s… ", t.Key)
				if t, err = a.waitRestarted(cmd.Context(), c, t, start, timeout); err != nil {
					return err
				}
			}
			if a.jsonOut {
				return a.printJSON(map[string]any{"id": t.ID, "key": t.Key, "state": t.State, "kid": t.SigningKeyID,
					"generation": t.Generation, "cellGeneration": t.Cell.Generation})
			}
			fmt.Fprintf(a.out, "Tenant %s signs with the new key %s.\n", t.Key, t.SigningKeyID)
			if t.State != controlplane.StateLive {
				fmt.Fprintf(a.out, "Its cell is not running (%s); it starts with the new key when resumed.\n", t.State)
			}
			return nil
		}),
	}
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "return as soon as the rotation is recorded")
	cmd.Flags().DurationVar(&timeout, "timeout", a.defaultTimeout, "how long to wait for the cell to be healthy again")
	return cmd
}

// waitRestarted polls the tenant every pollInterval until its cell runs the tenant's current
// configuration (Cell.Generation reaches Generation) and answers its health check, printing the
// outcome on stderr after the prefix the caller wrote.
func (a *app) waitRestarted(ctx context.Context, c *api.Client, t *controlplane.Tenant, start time.Time, timeout time.Duration) (*controlplane.Tenant, error) {
	want := t.Generation
	return a.poll(ctx, c, t, start, timeout, func(t *controlplane.Tenant) (bool, error) {
		if t.Cell.Generation < want {
			return false, nil
		}
		if st, err := c.CellStatus(ctx, t.ID); err != nil || !st.Healthy {
			return false, nil
		}
		fmt.Fprintf(a.errOut, "healthy in %.2fs\n", time.Since(start).Seconds())
		return true, nil
	}, func(t *controlplane.Tenant) string {
		return fmt.Sprintf("the cell of %s has not restarted with the new key after %s (see `ctl cell logs %s`)", t.Key, timeout, t.Key)
	})
}

// printJSON prints v as indented JSON on stdout.
func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
