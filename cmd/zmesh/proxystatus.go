//go:build !zmesh_dataplane

package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/zmesh/zmesh/internal/config/kubesource"
	"github.com/zmesh/zmesh/internal/localmesh"
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
	var admin, output, kubeconfig string
	cmd := &cobra.Command{
		Use:   "proxy-status",
		Short: "List connected proxies, their identity and whether their config is in sync",
		Long: `List connected proxies, their identity and whether their config is in sync.

The control plane is found, unless --controlplane-admin names it, in the
state file of the running ` + "`zmesh up`" + `; with --kubeconfig, of the running
` + "`zmesh up --kubeconfig`" + ` whose cluster (apiserver URL) is that file's. A
control plane running inside the cluster (zmesh install) serves its admin
port only in its pod: forward it (kubectl port-forward deploy/zmesh
15014 -n istio-system) and pass --controlplane-admin 127.0.0.1:15014.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			hint := "pass --controlplane-admin HOST:PORT (the admin= of the `zmesh: controlplane` line)"
			if !cmd.Flags().Changed("controlplane-admin") {
				// Under `zmesh up` the control plane's admin port is
				// allocated: find it in the running mesh's state file.
				keep, what, err := sameCluster(kubeconfig)
				if err != nil {
					return &exitError{code: 2, err: fmt.Errorf("proxy-status: %w", err)}
				}
				if st, err := findUpStateWhere(keep, what); err == nil {
					admin = st.ControlPlaneAdmin
					hint = fmt.Sprintf("the `zmesh up` (pid %d) that recorded it may have just stopped; or %s", st.PID, hint)
				} else if keep != nil {
					// The default address may be another mesh's control
					// plane: with a cluster named, say none was found.
					return fmt.Errorf("proxy-status: %v; %s", err, hint)
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
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "the proxies of the running `zmesh up --kubeconfig` against this file's cluster")
	return cmd
}

// sameCluster returns a filter of `zmesh up` states that keeps the meshes
// run against kubeconfig's cluster (the same apiserver URL, whichever file
// named it), and words for the error when none is found; no filter
// without a kubeconfig.
func sameCluster(kubeconfig string) (func(*localmesh.State) bool, string, error) {
	if kubeconfig == "" {
		return nil, "", nil
	}
	want, err := kubesource.RESTConfig(kubeconfig, false)
	if err != nil {
		return nil, "", err
	}
	keep := func(st *localmesh.State) bool {
		if st.Kubeconfig == "" {
			return false
		}
		got, err := kubesource.RESTConfig(st.Kubeconfig, false)
		return err == nil && got.Host == want.Host
	}
	return keep, " against " + want.Host, nil
}
