package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

func (a *app) cellCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "cell", Short: "Inspect tenants' cells", Args: cobra.ArbitraryArgs, RunE: group}
	cmd.AddCommand(a.cellStatusCmd(), a.cellLogsCmd())
	return cmd
}

func (a *app) cellStatusCmd() *cobra.Command {
	return &cobra.Command{
		Use: "status KEY", Short: "Show the state and health of a tenant's cell", Args: cobra.ExactArgs(1),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			st, err := c.CellStatus(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(st)
			}
			w := tabwriter.NewWriter(a.out, 0, 0, 2, ' ', 0)
			healthy := "no"
			if st.Healthy {
				healthy = "yes"
			}
			started := "-"
			if st.StartedAt != nil {
				started = st.StartedAt.Format(time.RFC3339)
			}
			for _, r := range [][2]string{
				{"Tenant", st.TenantID}, {"Driver", st.Driver}, {"State", st.State}, {"Healthy", healthy},
				{"Address", st.Address}, {"PID", fmt.Sprint(st.PID)}, {"Restarts", fmt.Sprint(st.Restarts)},
				{"Started", started}, {"Last exit", st.LastExit},
			} {
				fmt.Fprintf(w, "%s\t%s\n", r[0], r[1])
			}
			return w.Flush()
		}),
	}
}

func (a *app) cellLogsCmd() *cobra.Command {
	var lines int
	cmd := &cobra.Command{
		Use: "logs KEY", Short: "Print the last lines of a tenant's cell output", Args: cobra.ExactArgs(1),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			logs, err := c.CellLogs(cmd.Context(), args[0], lines)
			if err != nil {
				return err
			}
			_, err = a.out.Write(logs)
			return err
		}),
	}
	cmd.Flags().IntVarP(&lines, "lines", "n", 100, "number of lines (1 to 10000)")
	return cmd
}
