//go:build !zmesh_dataplane

package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// proxyStatus is one row of the control plane's /debug/proxy-status.
type proxyStatus struct {
	ID           string    `json:"id"`
	Identity     string    `json:"identity"`
	ConnectedAt  time.Time `json:"connectedAt"`
	SentVersion  string    `json:"sentVersion"`
	AckedVersion string    `json:"ackedVersion"`
	Synced       bool      `json:"synced"`
	LastNack     string    `json:"lastNack"`
}

func proxyStatusCmd() *cobra.Command {
	var admin, output string
	cmd := &cobra.Command{
		Use:   "proxy-status",
		Short: "List connected proxies, their identity and whether their config is in sync",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			hint := "pass --controlplane-admin HOST:PORT (the admin= of the `zmesh: controlplane` line)"
			if !cmd.Flags().Changed("controlplane-admin") {
				// Under `zmesh up` the control plane's admin port is
				// allocated: find it in the running mesh's state file.
				if st, err := findUpState(); err == nil {
					admin = st.ControlPlaneAdmin
					hint = fmt.Sprintf("the `zmesh up` (pid %d) that recorded it may have just stopped; or %s", st.PID, hint)
				} else {
					hint = fmt.Sprintf("is a control plane running? %v; %s", err, hint)
				}
			}
			client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}
			resp, err := client.Get("http://" + admin + "/debug/proxy-status")
			if err != nil {
				return fmt.Errorf("proxy-status: no control plane answers at %s: %w\n%s", admin, err, hint)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("proxy-status: control plane answered %s", resp.Status)
			}
			var rows []proxyStatus
			if err := json.NewDecoder(resp.Body).Decode(&rows); err != nil {
				return fmt.Errorf("proxy-status: %w", err)
			}
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(rows)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PROXY\tIDENTITY\tACKED\tSTATUS")
			for _, r := range rows {
				st := "SYNCED"
				if !r.Synced {
					st = "STALE"
				}
				if r.LastNack != "" {
					st = "NACK: " + r.LastNack
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.ID, r.Identity, r.AckedVersion, st)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&admin, "controlplane-admin", "127.0.0.1:15014", "the control plane's admin address (default: the running `zmesh up`'s, else this)")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	return cmd
}
