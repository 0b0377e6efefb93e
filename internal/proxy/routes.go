package proxy

import (
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/zmesh/zmesh/internal/registry"
)

// route is one service the outbound listener can send to.
type route struct {
	hostname  string // FQDN, destination_service
	name      string // first label, destination_service_name
	namespace string
	endpoints []endpoint
	next      atomic.Uint32 // round robin
}

// endpoint is a registry.Endpoint with what the hot path needs
// precomputed.
type endpoint struct {
	addr      string
	hasProxy  bool
	id        spiffeid.ID // expected server identity when hasProxy
	uri       string      // id as a string, for metrics and logs
	workload  string      // workload name
	namespace string      // workload namespace
}

// pick returns the next endpoint in round-robin order, nil when there is
// none.
func (r *route) pick() *endpoint {
	n := len(r.endpoints)
	if n == 0 {
		return nil
	}
	if n == 1 {
		return &r.endpoints[0]
	}
	i := r.next.Add(1) - 1
	return &r.endpoints[int(i%uint32(n))]
}

// routeTable maps every name a service may be called by to its route.
type routeTable struct {
	byHost map[string]*route
	// targets maps the address of every endpoint that has a proxy to the
	// identity expected there and the transport whose connections proved
	// it. The outbound transport looks endpoints up here per request, so
	// a request never rides a connection verified against an identity the
	// current view no longer expects at that address.
	targets map[string]*meshTarget
}

// buildRoutes compiles services into a route table. Names are the exact
// hostnames and, for NAME.NS.svc.DNSDOMAIN hosts, Istio's short forms:
// NAME.NS.svc, NAME.NS, and NAME alone for services in ns (the proxy's own
// namespace). An exact hostname always wins over a short form.
func buildRoutes(services []registry.Service, ns, dnsDomain string) (*routeTable, error) {
	// The control plane admits services with the same rules, so a view
	// that fails here is a control plane bug, not one bad resource.
	if err := registry.Check(services); err != nil {
		return nil, err
	}
	t := &routeTable{byHost: map[string]*route{}, targets: map[string]*meshTarget{}}
	routes := make([]*route, 0, len(services))
	for _, s := range services {
		host := canonicalHost(s.Hostname)
		r := &route{hostname: host, namespace: s.Namespace, name: host}
		if i := strings.IndexByte(host, '.'); i > 0 {
			r.name = host[:i]
		}
		for _, e := range s.Endpoints {
			ep := endpoint{addr: e.Address, hasProxy: e.HasProxy}
			ep.namespace, ep.workload, _ = strings.Cut(e.Workload, "/")
			if ep.workload == "" {
				ep.workload, ep.namespace = ep.namespace, ""
			}
			if e.HasProxy {
				id, err := spiffeid.FromString(e.Identity)
				if err != nil {
					return nil, fmt.Errorf("service %s endpoint %s: identity %q: %w", host, e.Address, e.Identity, err)
				}
				t.targets[e.Address] = &meshTarget{id: id}
				ep.id = id
				ep.uri = id.String()
			}
			r.endpoints = append(r.endpoints, ep)
		}
		t.byHost[host] = r
		routes = append(routes, r)
	}
	suffix := ".svc." + canonicalHost(dnsDomain)
	for _, r := range routes {
		base, ok := strings.CutSuffix(r.hostname, suffix)
		if !ok {
			continue
		}
		name, svcNS, ok := strings.Cut(base, ".")
		if !ok || strings.Contains(svcNS, ".") {
			continue
		}
		short := []string{base + ".svc", base}
		if svcNS == ns {
			short = append(short, name)
		}
		for _, h := range short {
			if _, taken := t.byHost[h]; !taken {
				t.byHost[h] = r
			}
		}
	}
	return t, nil
}

// lookup resolves a request's host (port allowed) to a route.
func (t *routeTable) lookup(host string) *route {
	if t == nil {
		return nil
	}
	return t.byHost[canonicalHost(stripPort(host))]
}

// canonicalHost is registry.CanonicalHost: the names buildRoutes keys
// and lookup compares are the ones registry.Check checks for duplicates.
func canonicalHost(h string) string { return registry.CanonicalHost(h) }

// stripPort removes a ":port" suffix, handling bracketed IPv6 literals.
func stripPort(hostport string) string {
	if strings.HasPrefix(hostport, "[") {
		if i := strings.IndexByte(hostport, ']'); i > 0 {
			return hostport[1:i]
		}
		return hostport
	}
	if i := strings.LastIndexByte(hostport, ':'); i >= 0 && strings.IndexByte(hostport, ':') == i {
		return hostport[:i]
	}
	return hostport
}
