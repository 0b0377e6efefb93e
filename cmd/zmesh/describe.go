//go:build !zmesh_dataplane

package main

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	security "istio.io/api/security/v1beta1"

	"github.com/zmesh/zmesh/internal/analyze"
	"github.com/zmesh/zmesh/internal/authn"
	"github.com/zmesh/zmesh/internal/authz"
	"github.com/zmesh/zmesh/internal/certinfo"
	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/config/filesource"
	"github.com/zmesh/zmesh/internal/policy"
)

// describeCmd is `zmesh describe workload NS/NAME`: what a workload's
// proxy enforces and why, from the same compiled policy.Set the proxy and
// `zmesh check` run.
func describeCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "describe", Short: "Explain what applies to a workload"}
	var dir, admin, rootNS, trustDomain, labelsFlag string
	w := &cobra.Command{
		Use:   "workload NAMESPACE/NAME",
		Short: "A workload's effective mTLS mode per port, every policy selecting it and why, and its certificate",
		Long: `Describe a workload: its effective PeerAuthentication mode (and the policy
that set it) for every port with its own setting and for all others, every
RequestAuthentication and AuthorizationPolicy selecting it and why, and its
live certificate when its proxy's admin port answers.

Under a running ` + "`zmesh up`" + ` nothing needs passing: the mesh directory, the
workload's labels and its proxy's admin address come from the mesh's state.
Otherwise give --config DIR (the workload's labels are read from its
zmesh.dev Workload document there, or --labels) and --admin HOST:PORT.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ns, name, ok := strings.Cut(args[0], "/")
			if !ok || ns == "" || name == "" {
				return &exitError{code: 2, err: fmt.Errorf("describe: %q is not NAMESPACE/NAME", args[0])}
			}
			var labels map[string]string
			if st, err := findUpState(); err == nil {
				if dir == "" {
					dir = st.MeshDir
				}
				for _, sw := range st.Workloads {
					if sw.Namespace == ns && sw.Name == name {
						labels = sw.Labels
						if admin == "" {
							admin = sw.Admin
						}
					}
				}
			}
			if dir == "" {
				return &exitError{code: 2, err: errors.New("describe: no running `zmesh up` found: give --config DIR")}
			}
			files, err := filesource.Read(dir)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			in := analyze.FromFiles(files)
			for _, aw := range in.Workloads {
				if labels == nil && aw.Namespace == ns && aw.Name == name {
					labels = aw.Labels
				}
			}
			if labelsFlag != "" {
				labels = map[string]string{}
				for _, kv := range strings.Split(labelsFlag, ",") {
					k, v, _ := strings.Cut(kv, "=")
					labels[k] = v
				}
			}
			if labels == nil {
				return &exitError{code: 2, err: fmt.Errorf("describe: workload %s/%s is not declared in %s: give its --labels", ns, name, dir)}
			}
			d := description{ns: ns, name: name, labels: labels, snap: in.Snapshot, rootNS: rootNS, trustDomain: trustDomain}
			if admin != "" {
				if chain, bundle, err := fetchProxyCerts(cmd.Context(), admin); err == nil {
					if c, err := certinfo.ParsePEM(chain); err == nil {
						roots, _ := certinfo.ParsePEM(bundle)
						d.certs = certinfo.Describe(c, roots)
					}
				} else {
					d.certErr = err
				}
			}
			return d.write(cmd.OutOrStdout(), time.Now())
		},
	}
	f := w.Flags()
	f.StringVar(&dir, "config", "", "directory of Istio resources (default: the running `zmesh up`'s)")
	f.StringVar(&admin, "admin", "", "the workload's proxy admin address, for its certificate (default: from the running `zmesh up`)")
	f.StringVar(&labelsFlag, "labels", "", "the workload's labels, k=v,k2=v2 (default: from its zmesh.dev Workload document)")
	f.StringVar(&rootNS, "root-namespace", authn.DefaultRootNamespace, "namespace whose policies apply mesh-wide")
	f.StringVar(&trustDomain, "trust-domain", "cluster.local", "mesh trust domain")
	cmd.AddCommand(w)
	return cmd
}

// description is what `zmesh describe workload` prints.
type description struct {
	ns, name, rootNS, trustDomain string
	labels                        map[string]string
	snap                          *config.Snapshot
	certs                         []certinfo.Cert
	certErr                       error
}

func (d description) write(w io.Writer, now time.Time) error {
	var b strings.Builder
	fmt.Fprintf(&b, "workload %s/%s\n", d.ns, d.name)
	fmt.Fprintf(&b, "  labels: %s\n", labelString(d.labels))
	// The peer policy and the policy set are the proxy's own (authn,
	// policy): no second evaluation path.
	peer := authn.CompilePeer(d.snap.List(config.KindPeerAuthentication), authn.Workload{Namespace: d.ns, Labels: d.labels}, d.rootNS)
	b.WriteString("mutual TLS (PeerAuthentication):\n")
	for _, p := range peer.Ports() {
		fmt.Fprintf(&b, "  port %d: %s (%s)\n", p, peer.Mode(p), sourceOr(peer.Source(p)))
	}
	label := "all ports"
	if len(peer.Ports()) > 0 {
		label = "other ports"
	}
	fmt.Fprintf(&b, "  %s: %s (%s)\n", label, peer.Mode(0), sourceOr(peer.Source(0)))

	set, err := policy.Compile(d.snap.List(config.KindPeerAuthentication), d.snap.List(config.KindRequestAuthentication),
		d.snap.List(config.KindAuthorizationPolicy), policy.Workload{Namespace: d.ns, Labels: d.labels},
		policy.Mesh{RootNamespace: d.rootNS, TrustDomain: d.trustDomain, PathNormalization: authz.NormalizeBase})
	if err != nil {
		fmt.Fprintf(&b, "policies: the proxy would refuse them: %v\n", err)
	} else {
		b.WriteString("request authentication:\n")
		d.listPolicies(&b, config.KindRequestAuthentication, set.RequestAuthentications)
		b.WriteString("authorization:\n")
		d.listPolicies(&b, config.KindAuthorizationPolicy, set.AuthorizationPolicies)
		if len(set.AuthorizationPolicies) == 0 {
			b.WriteString("  (every request that passes authentication is allowed)\n")
		}
	}
	b.WriteString("certificate:\n")
	switch {
	case len(d.certs) > 0:
		c := d.certs[0]
		fmt.Fprintf(&b, "  %s, %s, expires %s (in %s)\n", c.SPIFFEID, c.KeyType, c.NotAfter.Format(time.RFC3339), certinfo.Duration(c.NotAfter.Sub(now)))
	case d.certErr != nil:
		fmt.Fprintf(&b, "  proxy not reachable: %v\n", d.certErr)
	default:
		b.WriteString("  (give --admin HOST:PORT of its proxy)\n")
	}
	_, err = io.WriteString(w, b.String())
	return err
}

// listPolicies prints each selected policy with why it selects the workload.
func (d description) listPolicies(b *strings.Builder, kind config.Kind, keys []string) {
	if len(keys) == 0 {
		b.WriteString("  none\n")
	}
	for _, key := range keys {
		for _, r := range d.snap.List(kind) {
			if r.Key() != key {
				continue
			}
			var sel map[string]string
			action := ""
			switch spec := r.Spec.(type) {
			case *security.AuthorizationPolicy:
				sel = spec.GetSelector().GetMatchLabels()
				action = spec.GetAction().String() + " "
				if spec.GetAction() == security.AuthorizationPolicy_CUSTOM {
					action = "CUSTOM (" + spec.GetProvider().GetName() + ") "
				}
			case *security.RequestAuthentication:
				sel = spec.GetSelector().GetMatchLabels()
			}
			scope := "namespace-wide"
			if r.Namespace == d.rootNS {
				scope = "mesh-wide (root namespace)"
			}
			why := scope
			if len(sel) > 0 {
				why = scope + ", selector " + labelString(sel)
			}
			fmt.Fprintf(b, "  %s%s: %s\n", action, key, why)
		}
	}
}

func sourceOr(s string) string {
	if s == "" {
		return "no PeerAuthentication: Istio's default"
	}
	return s
}

func labelString(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		keys[i] = k + "=" + m[k]
	}
	if len(keys) == 0 {
		return "(none)"
	}
	return strings.Join(keys, ",")
}
