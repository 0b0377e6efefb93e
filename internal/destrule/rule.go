package destrule

import (
	networking "istio.io/api/networking/v1alpha3"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/labelsel"
	"github.com/zmesh/zmesh/internal/registry"
)

// Rule is the DestinationRule in force for one client and host. When
// several rules without selector name the same host in one namespace,
// they are merged as Istio merges them: the first (by name) that has a
// traffic policy gives it, and subsets are collected in that order, a
// name already taken being skipped. A Rule is immutable.
type Rule struct {
	// Keys are the NAMESPACE/NAME of the rules merged, for logs.
	Keys    []string
	policy  *networking.TrafficPolicy
	subsets []*networking.Subset
}

func newRule(rs []config.Resource) *Rule {
	r := &Rule{}
	taken := map[string]bool{}
	for _, res := range rs {
		dr := res.Spec.(*networking.DestinationRule)
		r.Keys = append(r.Keys, res.Key())
		if r.policy == nil {
			r.policy = dr.GetTrafficPolicy()
		}
		for _, s := range dr.GetSubsets() {
			if !taken[s.GetName()] {
				taken[s.GetName()] = true
				r.subsets = append(r.subsets, s)
			}
		}
	}
	return r
}

// Policy is what a rule says for traffic to one subset at one port: each
// setting from the most specific place that sets it.
type Policy struct {
	TLS              *networking.ClientTLSSettings
	LoadBalancer     *networking.LoadBalancerSettings
	ConnectionPool   *networking.ConnectionPoolSettings
	OutlierDetection *networking.OutlierDetection
}

// Policy returns the settings for subset ("" for the host as a whole) at
// the service port port (0: none known), with Istio's precedence, most
// specific first: the subset's portLevelSettings for port, the subset's
// policy, the host's portLevelSettings for port, the host's policy. A
// nil Rule, or a subset it does not define, gives the host's settings
// (nil Rule: none). The messages are shared: do not modify them.
func (r *Rule) Policy(subset string, port uint32) Policy {
	var p Policy
	if r == nil {
		return p
	}
	apply := func(tp *networking.TrafficPolicy) {
		if tp == nil {
			return
		}
		if port != 0 {
			for _, pl := range tp.GetPortLevelSettings() {
				if pl.GetPort().GetNumber() == port {
					p.fill(pl.GetTls(), pl.GetLoadBalancer(), pl.GetConnectionPool(), pl.GetOutlierDetection())
					break
				}
			}
		}
		p.fill(tp.GetTls(), tp.GetLoadBalancer(), tp.GetConnectionPool(), tp.GetOutlierDetection())
	}
	if s := r.subset(subset); s != nil {
		apply(s.GetTrafficPolicy())
	}
	apply(r.policy)
	return p
}

// fill sets what p does not have yet.
func (p *Policy) fill(tls *networking.ClientTLSSettings, lb *networking.LoadBalancerSettings, cp *networking.ConnectionPoolSettings, od *networking.OutlierDetection) {
	if p.TLS == nil {
		p.TLS = tls
	}
	if p.LoadBalancer == nil {
		p.LoadBalancer = lb
	}
	if p.ConnectionPool == nil {
		p.ConnectionPool = cp
	}
	if p.OutlierDetection == nil {
		p.OutlierDetection = od
	}
}

func (r *Rule) subset(name string) *networking.Subset {
	if r == nil || name == "" {
		return nil
	}
	for _, s := range r.subsets {
		if s.GetName() == name {
			return s
		}
	}
	return nil
}

// Subset returns the labels of the subset called name, and false when the
// rule defines no such subset (Istio then has no cluster for it: traffic
// routed there fails with 503, it never falls back to the whole host).
func (r *Rule) Subset(name string) (labels map[string]string, ok bool) {
	s := r.subset(name)
	if s == nil {
		return nil, false
	}
	return s.GetLabels(), true
}

// Ports returns the ports that subset's own traffic policy ("" for the
// host's) gives portLevelSettings, in order.
func (r *Rule) Ports(subset string) []uint32 {
	tp := r.policyOf(subset)
	out := make([]uint32, 0, len(tp.GetPortLevelSettings()))
	for _, pl := range tp.GetPortLevelSettings() {
		if n := pl.GetPort().GetNumber(); n != 0 {
			out = append(out, n)
		}
	}
	return out
}

func (r *Rule) policyOf(subset string) *networking.TrafficPolicy {
	if r == nil {
		return nil
	}
	if subset == "" {
		return r.policy
	}
	return r.subset(subset).GetTrafficPolicy()
}

// Subsets returns the names of the rule's subsets, in order.
func (r *Rule) Subsets() []string {
	if r == nil {
		return nil
	}
	out := make([]string, len(r.subsets))
	for i, s := range r.subsets {
		out[i] = s.GetName()
	}
	return out
}

// SubsetEndpoints returns the endpoints of eps whose labels include every
// label of labels, in order: the members of a subset. Empty labels select
// every endpoint. The result shares nothing it did not share with eps.
func SubsetEndpoints(eps []registry.Endpoint, labels map[string]string) []registry.Endpoint {
	var out []registry.Endpoint
	for _, ep := range eps {
		if labelsel.Matches(labels, ep.Labels) {
			out = append(out, ep)
		}
	}
	return out
}
