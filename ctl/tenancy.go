package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"atende/controlplane"
	"atende/controlplane/api"
)

// tenantSetTenancyCmd is `ctl tenant set-tenancy KEY strict|compat`.
func (a *app) tenantSetTenancyCmd() *cobra.Command {
	var noWait bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "set-tenancy KEY strict|compat",
		Short: "Let a migrated tenant's cell serve requests without tenant context (compat), or not (strict)",
		Long: "Set how strictly the tenant's cell checks the tenant context of requests.\n\n" +
			"strict (every tenant's default): a request must come on the tenant's host (else 421) and its token\n" +
			"must carry the tenant's tenantId (else 403).\n" +
			"compat: while the clients of a tenant migrated from the single-tenant app switch over, the cell also\n" +
			"serves requests on another host (the old bare domain, an IP address; never another tenant's\n" +
			"subdomain) and tokens it signed without a tenantId. A token of another tenant or audience is still\n" +
			"refused. Every such request is counted in the cell's atende_cell_compat_accepted_total and logged:\n" +
			"once it stays at zero, set the tenant back to strict.\n\n" +
			"The cell of a live tenant restarts with the new mode (the tenant stays live) and the command waits\n" +
			"until it is healthy again; a suspended tenant's cell gets it when resumed.",
		Example: "  ctl tenant set-tenancy acme compat\n  ctl tenant set-tenancy acme strict",
		Args: func(cmd *cobra.Command, args []string) error {
			if err := cobra.ExactArgs(2)(cmd, args); err != nil {
				return err
			}
			if err := controlplane.ValidateTenancy(args[1]); err != nil {
				return fmt.Errorf("%s", controlplane.ErrorMessage(err))
			}
			return nil
		},
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			start := time.Now()
			t, err := c.SetTenancy(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			if !noWait && t.State == controlplane.StateLive && t.Cell.Generation < t.Generation {
				fmt.Fprintf(a.errOut, "restarting the cell of %s… ", t.Key)
				if t, err = a.waitRestarted(cmd.Context(), c, t, start, timeout); err != nil {
					return err
				}
			}
			if a.jsonOut {
				return a.printJSON(map[string]any{"id": t.ID, "key": t.Key, "state": t.State, "tenancy": t.Tenancy,
					"generation": t.Generation, "cellGeneration": t.Cell.Generation})
			}
			fmt.Fprintf(a.out, "Tenant %s: tenancy %s.\n", t.Key, t.Tenancy)
			if t.State != controlplane.StateLive {
				fmt.Fprintf(a.out, "Its cell is not running (%s); it starts in this mode when resumed.\n", t.State)
			}
			return nil
		}),
	}
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "return as soon as the change is recorded")
	cmd.Flags().DurationVar(&timeout, "timeout", a.defaultTimeout, "how long to wait for the cell to be healthy again")
	return cmd
}

// switchToCompat sets tenant t to compat tenancy after a migration (`ctl tenant import
// --from-mongo … --compat`) and tells on stderr how to go back.
func (a *app) switchToCompat(cmd *cobra.Command, c *api.Client, t *controlplane.Tenant) error {
	u, err := c.SetTenancy(cmd.Context(), t.ID, controlplane.TenancyCompat)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.errOut, "tenant %s is in compat tenancy: requests without its host or tenantId are served (and counted);\n"+
		"switch back with `ctl tenant set-tenancy %s strict` once the old clients have moved (generation %d).\n", u.Key, u.Key, u.Generation)
	return nil
}
