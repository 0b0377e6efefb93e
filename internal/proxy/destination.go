package proxy

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/destrule"
	"github.com/zmesh/zmesh/internal/registry"
)

// policyKey names one compiled destination policy of a route: a subset
// ("" for the host as a whole) at a service port (0: any port the rule
// does not single out).
type policyKey struct {
	subset string
	port   uint32
}

// destPolicy is what a DestinationRule makes of a route for one subset
// and port: its endpoints (the subset's members), each with the transport
// security the rule sets in place of automatic mTLS, and how to balance
// among them.
type destPolicy struct {
	eps  []endpoint
	lb   networking.LoadBalancerSettings_SimpleLB
	next atomic.Uint32 // round robin
	pool *connPool     // nil: no limits
	od   *outlierDetector
	hash *hashPolicy // consistentHash; nil: lb
}

// pick returns an endpoint by the policy's load balancer, passing over
// endpoints that outlier detection ejected (unless too few are left, see
// outlierDetector), nil when there is none.
func (d *destPolicy) pick() *endpoint {
	n := len(d.eps)
	if d.od == nil || n < 2 || d.od.panicking(n) {
		return d.pickLB()
	}
	for range n {
		if ep := d.pickLB(); ep.health.in() {
			return ep
		}
	}
	return d.pickLB()
}

// pickLB returns an endpoint by the policy's load balancer alone.
func (d *destPolicy) pickLB() *endpoint {
	n := len(d.eps)
	switch {
	case n == 0:
		return nil
	case n == 1:
		return &d.eps[0]
	case d.lb == networking.LoadBalancerSettings_RANDOM:
		return &d.eps[rand.IntN(n)]
	case d.lb == networking.LoadBalancerSettings_LEAST_REQUEST || d.lb == networking.LoadBalancerSettings_LEAST_CONN:
		// Envoy's choice of two: of two endpoints drawn at random, the one
		// with fewer requests in flight.
		a, b := &d.eps[rand.IntN(n)], &d.eps[rand.IntN(n)]
		if b.active.Load() < a.active.Load() {
			return b
		}
		return a
	}
	i := d.next.Add(1) - 1
	return &d.eps[int(i%uint32(n))]
}

// pickFor is pickAt for an HTTP request, which a consistentHash policy
// keys on (a header, cookie, query parameter or the source address); a
// request without the key is balanced as the policy's simple balancer
// would, unless the key is an httpCookie with a ttl: then the proxy makes
// the cookie, hashes it like one the client sent, and returns the
// Set-Cookie header value the response must carry ("" when none).
func (r *route) pickFor(subset string, port uint32, req *http.Request) (ep *endpoint, pool *connPool, setCookie string) {
	d, ok := r.policy(subset, port)
	if !ok {
		ep, pool = r.pickAt(subset, port)
		return ep, pool, ""
	}
	if d == nil {
		return nil, nil, ""
	}
	if d.hash != nil {
		key, ok := d.hash.key(req)
		if !ok {
			key, setCookie, ok = d.hash.generate(rand.Uint64())
		}
		if ok {
			panicking := d.od == nil || d.od.panicking(len(d.eps))
			if i := d.hash.pick(key, func(i int) bool { return panicking || d.eps[i].health.in() }); i >= 0 {
				return &d.eps[i], d.pool, setCookie
			}
		}
	}
	return d.pick(), d.pool, setCookie
}

// policy returns the destination policy for subset and port, ok false
// when the route has no DestinationRule (automatic mTLS, round robin).
func (r *route) policy(subset string, port uint32) (d *destPolicy, ok bool) {
	if r.policies == nil {
		return nil, false
	}
	d = r.policies[policyKey{subset, port}]
	if d == nil {
		d = r.policies[policyKey{subset, 0}]
	}
	return d, true
}

// pickAt returns the endpoint for a request to subset ("" for the host)
// at the service port port (0 when unknown), and the connection pool
// limits that apply (nil: none): under a DestinationRule, from the rule's
// policy for them; else round robin with automatic mTLS. A nil endpoint:
// none, or a subset the rule does not define (Istio has no cluster for it
// and answers 503; it never falls back to the host).
func (r *route) pickAt(subset string, port uint32) (*endpoint, *connPool) {
	if r.policies == nil {
		if subset != "" {
			return nil, nil
		}
		return r.pick(), nil
	}
	d := r.policies[policyKey{subset, port}]
	if d == nil {
		d = r.policies[policyKey{subset, 0}]
	}
	if d == nil {
		return nil, nil
	}
	return d.pick(), d.pool
}

// applyDestinationRules compiles, for every route of t, the
// DestinationRule that governs c's traffic to it (destrule.Select) into
// the route's policies: one per subset and per port the rule singles out.
// Rules that do not validate refuse the push: a proxy must not guess what
// a broken TLS setting meant.
func applyDestinationRules(t *routeTable, services []registry.Service, rules []config.Resource, c destrule.Client, credDir string, now func() time.Time) error {
	for _, r := range rules {
		if err := config.Validate(r); err != nil {
			return fmt.Errorf("destination rule %s: %w", r.Key(), err)
		}
	}
	if len(rules) == 0 {
		return nil
	}
	origins := map[string]*originator{}
	for _, s := range services {
		rt := t.byHost[canonicalHost(s.Hostname)]
		if rt == nil || len(rt.endpoints) != len(s.Endpoints) {
			continue
		}
		rule := destrule.Select(rules, c, rt.hostname, s.Namespace)
		if rule == nil {
			continue
		}
		rt.rule = rule
		rt.policies = map[policyKey]*destPolicy{}
		for _, k := range policyKeys(rule) {
			labels, ok := rule.Subset(k.subset)
			if k.subset != "" && !ok {
				continue
			}
			pol := rule.Policy(k.subset, k.port)
			d := &destPolicy{lb: pol.LoadBalancer.GetSimple(), pool: newConnPool(pol.ConnectionPool)}
			for i, e := range s.Endpoints {
				if k.subset != "" && len(destrule.SubsetEndpoints([]registry.Endpoint{e}, labels)) == 0 {
					continue
				}
				ep := rt.endpoints[i]
				if err := secure(t, &ep, e, pol.TLS, rt.hostname, credDir, origins); err != nil {
					return err
				}
				d.eps = append(d.eps, ep)
			}
			d.hash = newHashPolicy(pol.LoadBalancer.GetConsistentHash(), d.eps)
			if d.od = newOutlierDetector(pol.OutlierDetection, len(d.eps), now); d.od != nil {
				for i := range d.eps {
					d.eps[i].health = &hostHealth{od: d.od}
				}
			}
			rt.policies[k] = d
		}
	}
	t.origins = origins
	return nil
}

// policyKeys are the subsets and ports rule gives settings to: the host
// and each subset, each at any port and at every port named in the host's
// or the subset's portLevelSettings.
func policyKeys(rule *destrule.Rule) []policyKey {
	ports := rule.Ports("")
	keys := []policyKey{{"", 0}}
	for _, p := range ports {
		keys = append(keys, policyKey{"", p})
	}
	for _, s := range rule.Subsets() {
		keys = append(keys, policyKey{s, 0})
		for _, p := range append(ports, rule.Ports(s)...) {
			keys = append(keys, policyKey{s, p})
		}
	}
	return keys
}

// secure sets ep's transport security from a rule's TLS settings (nil:
// automatic mTLS, ep unchanged). DISABLE: plaintext, even to a proxy.
// ISTIO_MUTUAL: mTLS with the mesh's certificates, the server held to the
// endpoint's identity (secure naming), or, for an endpoint with none
// known, the rule's first SPIFFE subjectAltName; with neither, requests
// fail (zmesh will not accept any mesh identity where Istio would).
// SIMPLE and MUTUAL: TLS origination (see originator).
func secure(t *routeTable, ep *endpoint, e registry.Endpoint, s *networking.ClientTLSSettings, host, credDir string, origins map[string]*originator) error {
	if s == nil {
		return nil
	}
	ep.hasProxy, ep.id, ep.uri, ep.origin, ep.refuse = false, spiffeid.ID{}, "", nil, ""
	switch s.GetMode() {
	case networking.ClientTLSSettings_DISABLE:
	case networking.ClientTLSSettings_ISTIO_MUTUAL:
		candidates := append([]string{e.Identity}, s.GetSubjectAltNames()...)
		for _, c := range candidates {
			if id, err := spiffeid.FromString(c); err == nil && c != "" {
				ep.hasProxy, ep.id, ep.uri = true, id, id.String()
				break
			}
		}
		if !ep.hasProxy {
			ep.refuse = "DestinationRule ISTIO_MUTUAL toward " + e.Address + ", whose identity is unknown"
			return nil
		}
		if m := t.targets[e.Address]; m == nil {
			t.targets[e.Address] = &meshTarget{id: ep.id}
		} else if m.id != ep.id {
			ep.refuse = fmt.Sprintf("DestinationRule ISTIO_MUTUAL toward %s expects %s, which already serves %s", e.Address, ep.id, m.id)
			ep.hasProxy = false
		}
	case networking.ClientTLSSettings_SIMPLE, networking.ClientTLSSettings_MUTUAL:
		g := newOriginator(s, host, credDir)
		if have, ok := origins[g.key]; ok {
			g = have
		}
		origins[g.key] = g
		ep.origin = g
	default:
		return fmt.Errorf("destination rule for %s: tls mode %v is not supported", host, s.GetMode())
	}
	return nil
}

// requestPort is the service port a request or stream was addressed to:
// the port in its authority, else the captured destination's, else 80
// (a plaintext HTTP request, the only kind origin-form without a port).
func requestPort(hostport string, dst netip.AddrPort, captured bool) uint32 {
	if _, p, err := net.SplitHostPort(hostport); err == nil {
		if n, err := strconv.ParseUint(p, 10, 16); err == nil {
			return uint32(n)
		}
	}
	if captured {
		return uint32(dst.Port())
	}
	return 80
}
