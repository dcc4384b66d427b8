package main

import (
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// webhooksCmd is `ctl webhooks`, the lifecycle webhooks to the platform URL.
func (a *app) webhooksCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "webhooks", Short: "Inspect the lifecycle webhooks sent to the platform URL", Args: cobra.ArbitraryArgs, RunE: group}
	cmd.AddCommand(a.webhooksDeliveriesCmd())
	return cmd
}

// webhooksDeliveriesCmd is `ctl webhooks deliveries [--tenant KEY] [--limit N]`.
func (a *app) webhooksDeliveriesCmd() *cobra.Command {
	var tenant string
	var limit int
	cmd := &cobra.Command{
		Use:   "deliveries [--tenant KEY] [--limit N]",
		Short: "List the attempts to deliver tenant lifecycle events to the platform URL, newest first",
		Long: "List the delivery log of the lifecycle webhooks (ATENDE_PLATFORM_WEBHOOK_URL): one line per attempt,\n" +
			"newest first, with the event id (the same on every retry), its type, the answer and the outcome\n" +
			"(delivered, retrying at a time, or failed after the last attempt), then the tenants whose next event\n" +
			"waits for a retry. Entries are kept 30 days.",
		Example: "  ctl webhooks deliveries\n  ctl webhooks deliveries --tenant acme --limit 20 --json",
		Args:    cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			log, err := c.WebhookDeliveries(cmd.Context(), tenant, limit)
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(log)
			}
			if !log.Enabled {
				fmt.Fprintln(a.errOut, "lifecycle webhooks are not enabled on this control plane (set ATENDE_PLATFORM_WEBHOOK_URL)")
			} else {
				fmt.Fprintf(a.errOut, "platform URL: %s\n", log.URL)
			}
			w := tabwriter.NewWriter(a.out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(w, "AT\tTENANT\tEVENT\tTYPE\tATTEMPT\tANSWER\tOUTCOME")
			for _, d := range log.Deliveries {
				answer := strconv.Itoa(d.StatusCode)
				if d.StatusCode == 0 {
					answer = "-"
				}
				if d.Error != "" {
					answer += " (" + d.Error + ")"
				}
				outcome := d.Outcome
				if d.NextAttemptAt != nil {
					outcome += " at " + d.NextAttemptAt.Format(time.RFC3339)
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", d.At.Format(time.RFC3339), d.TenantKey, d.EventID, d.Type, d.Attempt, answer, outcome)
			}
			if err := w.Flush(); err != nil {
				return err
			}
			for _, p := range log.Pending {
				fmt.Fprintf(a.out, "pending: tenant %s, event %d after %d failed attempts, next at %s\n",
					p.TenantID, p.PendingSeq, p.Attempts, p.NextAt.Format(time.RFC3339))
			}
			return nil
		}),
	}
	cmd.Flags().StringVar(&tenant, "tenant", "", "only this tenant's events (key or id)")
	cmd.Flags().IntVar(&limit, "limit", 0, "at most this many attempts (default 100, at most 500)")
	return cmd
}
