package proxy

import (
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/zmesh/zmesh/internal/destrule"
	"github.com/zmesh/zmesh/internal/registry"
	"github.com/zmesh/zmesh/internal/xds"
)

// route is one service the outbound listener can send to.
type route struct {
	hostname  string // FQDN, destination_service
	name      string // first label, destination_service_name
	namespace string
	endpoints []endpoint
	next      atomic.Uint32 // round robin
	// ports are the service's declared ports (protocol selection for
	// captured connections); none: any port, protocol detected.
	ports []registry.Port
	// rule is the DestinationRule that governs traffic to the service
	// (nil: none), and policies what it makes of each subset and port
	// (nil: automatic mTLS to every endpoint; see pickAt).
	rule     *destrule.Rule
	policies map[policyKey]*destPolicy
}

// endpoint is a registry.Endpoint with what the hot path needs
// precomputed.
type endpoint struct {
	addr string
	// hasProxy: speak mTLS to it (it has a proxy that does not disable
	// mTLS on this port).
	hasProxy bool
	// tunnelPort is the port of the endpoint's HBONE tunnel, on its
	// host (0: none): its TCP streams ride it (hbone.go).
	tunnelPort uint32
	id         spiffeid.ID // expected server identity when hasProxy
	uri        string      // id as a string, for metrics and logs
	workload   string      // workload name
	namespace  string      // workload namespace
	// origin, when set, originates TLS to the endpoint as a
	// DestinationRule says (SIMPLE, MUTUAL); hasProxy is then false.
	origin *originator
	// refuse, when set, is why no request may go to the endpoint: a
	// DestinationRule asks for a security it cannot be given.
	refuse string
	// active counts requests and streams in flight to the endpoint, for
	// LEAST_REQUEST; shared by every policy's copy of the endpoint.
	active *atomic.Int64
	// health is the endpoint's outlier detection record under a
	// DestinationRule's outlierDetection (nil: none).
	health *hostHealth

	// labels are the endpoint's, for DestinationRule subsets.
	labels map[string]string
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
	// origins are the TLS originators DestinationRules ask for, by key.
	origins map[string]*originator
	// byVIP maps the services' virtual addresses, and byEndpoint their
	// endpoints' addresses, to their routes: where a captured
	// connection's original destination leads.
	byVIP      map[netip.Addr]*route
	byEndpoint map[netip.AddrPort]*route
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
	t := &routeTable{byHost: map[string]*route{}, targets: map[string]*meshTarget{},
		byVIP: map[netip.Addr]*route{}, byEndpoint: map[netip.AddrPort]*route{}}
	routes := make([]*route, 0, len(services))
	for _, s := range services {
		host := canonicalHost(s.Hostname)
		r := &route{hostname: host, namespace: s.Namespace, name: host, ports: s.Ports}
		for _, a := range s.Addresses {
			ip, err := netip.ParseAddr(a)
			if err != nil {
				return nil, fmt.Errorf("service %s: virtual address %q: %w", host, a, err)
			}
			// One ServiceEntry may give several hosts one address: the
			// first host (services come sorted) takes what arrives by
			// address alone; Host and SNI still tell them apart.
			if _, dup := t.byVIP[ip.Unmap()]; !dup {
				t.byVIP[ip.Unmap()] = r
			}
		}
		if i := strings.IndexByte(host, '.'); i > 0 {
			r.name = host[:i]
		}
		for _, e := range s.Endpoints {
			// Automatic mTLS: to an endpoint with a proxy, unless that
			// proxy disables mTLS on the endpoint's port (the control
			// plane resolved its PeerAuthentication), as Istio does.
			ep := endpoint{addr: e.Address, hasProxy: e.HasProxy && e.MTLSMode != xds.ModeDisable, active: new(atomic.Int64), labels: e.Labels}
			if ep.hasProxy {
				ep.tunnelPort = e.TunnelPort
			}
			ep.namespace, ep.workload, _ = strings.Cut(e.Workload, "/")
			if ep.workload == "" {
				ep.workload, ep.namespace = ep.namespace, ""
			}
			if ep.hasProxy {
				id, err := spiffeid.FromString(e.Identity)
				if err != nil {
					return nil, fmt.Errorf("service %s endpoint %s: identity %q: %w", host, e.Address, e.Identity, err)
				}
				t.targets[e.Address] = &meshTarget{id: id}
				ep.id = id
				ep.uri = id.String()
			}
			r.endpoints = append(r.endpoints, ep)
			if ap, err := netip.ParseAddrPort(e.Address); err == nil {
				if _, taken := t.byEndpoint[unmapPort(ap)]; !taken {
					t.byEndpoint[unmapPort(ap)] = r
				}
			}
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

// lookup resolves a request's host (port allowed) to a route: a service
// name, or one of a service's virtual addresses.
func (t *routeTable) lookup(host string) *route {
	if t == nil {
		return nil
	}
	h := canonicalHost(stripPort(host))
	if r := t.byHost[h]; r != nil {
		return r
	}
	if ip, err := netip.ParseAddr(h); err == nil {
		return t.byVIP[ip.Unmap()]
	}
	return nil
}

// byDst resolves the original destination of a captured connection: one
// of a service's virtual addresses at one of its ports (any port when it
// declares none), or the address of one of its endpoints. It returns the
// route and the service port (nil: none declared, or an endpoint address
// that names none), or a nil route when dst is not in the mesh.
func (t *routeTable) byDst(dst netip.AddrPort) (*route, *registry.Port) {
	if t == nil {
		return nil, nil
	}
	dst = unmapPort(dst)
	if r := t.byVIP[dst.Addr()]; r != nil {
		if len(r.ports) == 0 {
			return r, nil
		}
		for i := range r.ports {
			if r.ports[i].Number == uint32(dst.Port()) {
				return r, &r.ports[i]
			}
		}
		return nil, nil // a port the service does not have
	}
	if r := t.byEndpoint[dst]; r != nil {
		for i := range r.ports {
			p := &r.ports[i]
			if p.TargetPort == uint32(dst.Port()) || p.TargetPort == 0 && p.Number == uint32(dst.Port()) {
				return r, p
			}
		}
		return r, nil
	}
	return nil, nil
}

func unmapPort(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
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
