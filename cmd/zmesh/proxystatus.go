//go:build !zmesh_dataplane

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/zmesh/zmesh/internal/config/kubesource"
	"github.com/zmesh/zmesh/internal/install"
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
	// ControlPlane is the pod of the replica the proxy is connected to,
	// when proxy-status asked an installed control plane's replicas.
	ControlPlane string `json:"controlPlane,omitempty"`
}

func proxyStatusCmd() *cobra.Command {
	var admin, output, kubeconfig, cpNamespace string
	cmd := &cobra.Command{
		Use:   "proxy-status",
		Short: "List connected proxies, their identity and whether their config is in sync",
		Long: `List connected proxies, their identity and whether their config is in sync.

The control plane is found, unless --controlplane-admin names it, in the
state file of the running ` + "`zmesh up`" + `; with --kubeconfig, of the running
` + "`zmesh up --kubeconfig`" + ` whose cluster (apiserver URL) is that file's,
else in the cluster itself: every pod of the control plane zmesh install
deployed (label ` + install.PodSelector + ` in --controlplane-namespace) is asked
through the apiserver's pod proxy (which needs get on pods/proxy there), and
their proxies are listed together with the replica each is connected to.`,
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
					// No local mesh against that cluster: ask the
					// control plane running in it.
					rows, cerr := clusterProxyStatus(cmd.Context(), kubeconfig, cpNamespace, cmd.ErrOrStderr())
					if cerr != nil {
						return fmt.Errorf("proxy-status: %v; %v", err, cerr)
					}
					return printProxyStatus(cmd.OutOrStdout(), rows, output)
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
			return printProxyStatus(cmd.OutOrStdout(), rows, output)
		},
	}
	cmd.Flags().StringVar(&admin, "controlplane-admin", "127.0.0.1:15014", "the control plane's admin address (default: the running `zmesh up`'s, else this)")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "the proxies of the running `zmesh up --kubeconfig` against this file's cluster, else of the control plane installed in that cluster")
	cmd.Flags().StringVar(&cpNamespace, "controlplane-namespace", install.Namespace, "with --kubeconfig: the namespace of the installed control plane's pods")
	return cmd
}

// printProxyStatus writes rows as JSON or as a table; the table has a
// CONTROL PLANE column when the rows come from several replicas.
func printProxyStatus(w io.Writer, rows []proxyStatus, output string) error {
	if output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	}
	replicas := slices.ContainsFunc(rows, func(r proxyStatus) bool { return r.ControlPlane != "" })
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	head := "PROXY\tIDENTITY\tACKED\tSTATUS"
	if replicas {
		head += "\tCONTROL PLANE"
	}
	fmt.Fprintln(tw, head)
	for _, r := range rows {
		st := "SYNCED"
		if !r.Synced {
			st = "STALE"
		}
		if r.LastNack != "" {
			st = "NACK: " + r.LastNack
		}
		line := fmt.Sprintf("%s\t%s\t%s\t%s", r.ID, r.Identity, r.AckedVersion, st)
		if replicas {
			line += "\t" + r.ControlPlane
		}
		fmt.Fprintln(tw, line)
	}
	return tw.Flush()
}

// clusterAskTimeout bounds proxy-status's questions to a cluster.
const clusterAskTimeout = 10 * time.Second

// clusterProxyStatus asks every pod of the control plane installed in
// namespace, through the apiserver's pod proxy, for its connected
// proxies: each replica knows only its own. A replica that does not
// answer is reported on warn and skipped; none answering is an error.
func clusterProxyStatus(ctx context.Context, kubeconfig, namespace string, warn io.Writer) ([]proxyStatus, error) {
	rc, err := kubesource.RESTConfig(kubeconfig, false)
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, clusterAskTimeout)
	defer cancel()
	pods, err := cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: install.PodSelector})
	if err != nil {
		return nil, fmt.Errorf("no control plane found in the cluster: %w", err)
	}
	var rows []proxyStatus
	answered := 0
	for _, pod := range pods.Items {
		if pod.Status.PodIP == "" || pod.DeletionTimestamp != nil {
			continue
		}
		raw, err := cs.CoreV1().Pods(namespace).ProxyGet("http", pod.Name, strconv.Itoa(adminPort(&pod)), "/debug/proxy-status", nil).DoRaw(ctx)
		if err != nil {
			fmt.Fprintf(warn, "zmesh: control plane %s/%s: %v\n", namespace, pod.Name, err)
			continue
		}
		var got []proxyStatus
		if err := json.Unmarshal(raw, &got); err != nil {
			fmt.Fprintf(warn, "zmesh: control plane %s/%s: %v\n", namespace, pod.Name, err)
			continue
		}
		for i := range got {
			got[i].ControlPlane = pod.Name
		}
		rows = append(rows, got...)
		answered++
	}
	if answered == 0 {
		return nil, fmt.Errorf("no control plane pod (%s, with an IP, in namespace %s) answered", install.PodSelector, namespace)
	}
	slices.SortFunc(rows, func(a, b proxyStatus) int { return strings.Compare(a.ID+" "+a.ControlPlane, b.ID+" "+b.ControlPlane) })
	return rows, nil
}

// adminPort is the control plane's admin port in pod: its container port
// named install.AdminPortName, else install's number.
func adminPort(pod *corev1.Pod) int {
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.Name == install.AdminPortName {
				return int(p.ContainerPort)
			}
		}
	}
	return install.PortAdmin
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
