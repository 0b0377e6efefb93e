package analyze

import (
	"sort"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/zmesh/zmesh/internal/config"
)

// ConflictingGateways is Istio's IST0145.
var ConflictingGateways = Type{Code: "IST0145", Level: Error, Name: "ConflictingGateways",
	Template: "Conflict with gateways %s (workload selector %s, port %d, hosts %s).",
	Why:      "two Gateways with one selector serve one port for overlapping hosts: a gateway proxy takes the first server for a host, the other's never applies"}

// analyzeGateways reports, as istioctl does, Gateways that select the
// same gateway workloads (an equal selector) and serve one port for
// overlapping hosts (IST0145, on each of them, naming the others), and
// VirtualServices that name a gateway that does not exist (IST0101
// "gateway"), in their gateways or in an HTTP route's match.
func analyzeGateways(c *context) {
	type server struct {
		r     config.Resource
		port  uint32
		hosts []string // dnsNames, lower case
	}
	bySelector := map[string][]server{}
	var selectors []string
	for _, r := range c.in.Snapshot.List(config.KindGateway) {
		gw, ok := r.Spec.(*networking.Gateway)
		if !ok {
			continue
		}
		sel := selectorString(gw.GetSelector())
		if _, seen := bySelector[sel]; !seen {
			selectors = append(selectors, sel)
		}
		for _, s := range gw.GetServers() {
			srv := server{r: r, port: s.GetPort().GetNumber()}
			for _, h := range s.GetHosts() {
				_, name := config.SplitServerHost(h)
				srv.hosts = append(srv.hosts, strings.ToLower(name))
			}
			bySelector[sel] = append(bySelector[sel], srv)
		}
	}
	for _, sel := range selectors {
		servers := bySelector[sel]
		for i, a := range servers {
			conflicts := map[string]bool{}
			var overlap []string
			for j, b := range servers {
				if i == j || a.r.Key() == b.r.Key() || a.port != b.port {
					continue
				}
				for _, ha := range a.hosts {
					for _, hb := range b.hosts {
						if config.HostsIntersect(ha, hb) {
							conflicts[b.r.Key()] = true
							overlap = appendUnique(overlap, narrower(ha, hb))
						}
					}
				}
			}
			if len(conflicts) == 0 {
				continue
			}
			names := make([]string, 0, len(conflicts))
			for k := range conflicts {
				names = append(names, k)
			}
			sort.Strings(names)
			c.reportOn(ConflictingGateways, a.r, strings.Join(names, ","), sel, a.port, strings.Join(overlap, ","))
		}
	}

	known := map[string]bool{}
	for _, r := range c.in.Snapshot.List(config.KindGateway) {
		known[r.Key()] = true
	}
	for _, r := range c.in.Snapshot.List(config.KindVirtualService) {
		vs, ok := r.Spec.(*networking.VirtualService)
		if !ok {
			continue
		}
		reported := map[string]bool{}
		check := func(g string) {
			if g == config.GatewayMesh || known[config.GatewayRef(g, r.Namespace)] || reported[g] {
				return
			}
			reported[g] = true
			c.reportOn(ReferencedResourceNotFound, r, "gateway", g)
		}
		for _, g := range vs.GetGateways() {
			check(g)
		}
		for _, hr := range vs.GetHttp() {
			for _, m := range hr.GetMatch() {
				for _, g := range m.GetGateways() {
					check(g)
				}
			}
		}
	}
}

// narrower returns the more specific of two intersecting host patterns:
// the hosts both take.
func narrower(a, b string) string {
	if a == "*" || strings.HasPrefix(a, "*") && !strings.HasPrefix(b, "*") || strings.HasPrefix(a, "*") && len(b) > len(a) {
		return b
	}
	return a
}

func appendUnique(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}
