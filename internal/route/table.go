package route

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/zmesh/zmesh/internal/config"
)

// Config is what a Table depends on besides the VirtualServices: the
// client proxy it is compiled for.
type Config struct {
	// Namespace is the client proxy's namespace: exportTo is checked
	// against it, sourceNamespace matches it, and its own VirtualServices
	// win a host claimed by several.
	Namespace string
	// Labels are the client workload's labels, for sourceLabels.
	Labels map[string]string
	// DNSDomain completes short host names (cluster.local).
	DNSDomain string
	// Gateways, when set, make the table a gateway proxy's: it takes the
	// VirtualServices bound to these Gateways (NAMESPACE/NAME) instead of
	// those bound to sidecars ("mesh"), and a match's gateways are read
	// against them.
	Gateways []string
}

// bound reports whether the VirtualService vs of namespace ns applies to
// the proxy of cfg: bound to one of cfg.Gateways, or for a sidecar bound
// to "mesh" and exported to its namespace. A gateway's VirtualServices
// were filtered by exportTo (against the Gateway's namespace) by the
// control plane.
func (cfg Config) bound(vs *networking.VirtualService, ns string) bool {
	if len(cfg.Gateways) == 0 {
		return config.AppliesToSidecars(vs) && config.ExportedTo(vs.GetExportTo(), ns, cfg.Namespace)
	}
	for _, g := range cfg.Gateways {
		if config.BindsGateway(vs, ns, g) {
			return true
		}
	}
	return false
}

// boundBy reports whether a route match's gateways (gws, written in
// namespace ns; none: every gateway the VirtualService binds) include
// the proxy of cfg: "mesh" for a sidecar, one of cfg.Gateways for a
// gateway.
func (cfg Config) boundBy(gws []string, ns string) bool {
	if len(gws) == 0 {
		return true
	}
	for _, g := range gws {
		if len(cfg.Gateways) == 0 {
			if g == config.GatewayMesh {
				return true
			}
			continue
		}
		if slices.Contains(cfg.Gateways, config.GatewayRef(g, ns)) {
			return true
		}
	}
	return false
}

// Table is the compiled VirtualServices of one proxy, by host. It is
// immutable and safe for concurrent use; the zero value and nil route
// nothing.
type Table struct {
	exact map[string]*VirtualService
	// wild are the "*.suffix" hosts, longest suffix first.
	wild []wildcard
}

type wildcard struct {
	suffix string // ".example.com"
	vs     *VirtualService
}

// VirtualService is one compiled VirtualService.
type VirtualService struct {
	Name   string // NAMESPACE/NAME, for logs
	Routes []*HTTPRoute
	// TCP and TLS are its tcp and tls routes, for streams.
	TCP, TLS []*StreamRoute
	// HTTP is set when it has an http section: only then does it route
	// HTTP requests (a VirtualService of tcp routes alone leaves them be).
	HTTP bool
}

// Compile turns the VirtualServices in vss into a Table for the proxy
// described by cfg. VirtualServices not bound to sidecars (gateways
// without "mesh") or not exported to cfg.Namespace are left out. When
// several claim one host, the one in the proxy's own namespace wins, then
// the first by namespace and name (Istio takes the oldest; zmesh has no
// creation time, and a stable order is what matters). Compile fails only
// on what validation should have refused, so that a proxy rejects such a
// push as a whole.
func Compile(vss []config.Resource, cfg Config) (*Table, error) {
	ordered := make([]config.Resource, 0, len(vss))
	for _, r := range vss {
		vs, ok := r.Spec.(*networking.VirtualService)
		if !ok {
			return nil, fmt.Errorf("route: %s is a %T, not a VirtualService", r.Key(), r.Spec)
		}
		if !cfg.bound(vs, r.Namespace) {
			continue
		}
		ordered = append(ordered, r)
	}
	sort.SliceStable(ordered, func(i, j int) bool {
		oi, oj := ordered[i].Namespace == cfg.Namespace, ordered[j].Namespace == cfg.Namespace
		if oi != oj {
			return oi
		}
		if ordered[i].Namespace != ordered[j].Namespace {
			return ordered[i].Namespace < ordered[j].Namespace
		}
		return ordered[i].Name < ordered[j].Name
	})
	t := &Table{exact: map[string]*VirtualService{}}
	seenWild := map[string]bool{}
	for _, r := range ordered {
		vs := r.Spec.(*networking.VirtualService)
		c, err := compileVS(r, vs, cfg)
		if err != nil {
			return nil, fmt.Errorf("route: VirtualService %s: %w", r.Key(), err)
		}
		for _, h := range vs.GetHosts() {
			h = Host(h, r.Namespace, cfg.DNSDomain)
			if suffix, ok := strings.CutPrefix(h, "*"); ok {
				if !seenWild[suffix] {
					seenWild[suffix] = true
					t.wild = append(t.wild, wildcard{suffix: suffix, vs: c})
				}
				continue
			}
			if _, taken := t.exact[h]; !taken {
				t.exact[h] = c
			}
		}
	}
	sort.SliceStable(t.wild, func(i, j int) bool { return len(t.wild[i].suffix) > len(t.wild[j].suffix) })
	return t, nil
}

// Lookup returns the VirtualService for host (a name without port, in
// any case; a mesh service's FQDN when the proxy knows one), or nil.
// An exact host wins over a wildcard; the longest wildcard wins.
func (t *Table) Lookup(host string) *VirtualService {
	if t == nil {
		return nil
	}
	h := canonical(host)
	if vs := t.exact[h]; vs != nil {
		return vs
	}
	for _, w := range t.wild {
		if strings.HasSuffix(h, w.suffix) && len(h) > len(w.suffix) {
			return w.vs
		}
	}
	return nil
}

// Len is the number of hosts with a VirtualService.
func (t *Table) Len() int {
	if t == nil {
		return 0
	}
	return len(t.exact) + len(t.wild)
}

// Host resolves a host as written in a VirtualService of namespace ns:
// a short name (no dot) is NAME.NS.svc.DNSDOMAIN, as Istio reads it;
// anything else is taken as written, lower-cased.
func Host(h, ns, dnsDomain string) string {
	h = canonical(h)
	if h == "*" || strings.Contains(h, ".") || dnsDomain == "" {
		return h
	}
	return h + "." + ns + ".svc." + canonical(dnsDomain)
}

func canonical(h string) string {
	return strings.TrimSuffix(strings.ToLower(h), ".")
}
