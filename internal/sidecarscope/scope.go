// Package sidecarscope decides which Istio Sidecar resource governs a
// proxy and what it lets the proxy see: the hosts of its egress listeners
// and its outboundTrafficPolicy. The control plane uses it to narrow what
// it pushes to each proxy (a proxy that is never told of a service cannot
// route to it), so the decision is pure and lives in one place.
package sidecarscope

import (
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/labelsel"
)

// Scope is the Sidecar in force for one proxy.
type Scope struct {
	// Key is the Sidecar's NAMESPACE/NAME.
	Key string
	// OutboundTrafficPolicy is the Sidecar's mode (REGISTRY_ONLY or
	// ALLOW_ANY), "" when it sets none and the mesh's applies.
	OutboundTrafficPolicy string
	hosts                 []host
	// all: no egress listener, every host stays visible.
	all bool
}

// host is one egress host: a namespace ("*" any, "~" none, else a name;
// "." is resolved to the proxy's namespace when matching) and a DNS name
// ("*" any, "*.suffix", or exact).
type host struct{ ns, name string }

// Select returns the Scope of a proxy in namespace ns with labels, as
// Istio picks a Sidecar: one of ns whose workloadSelector selects the
// proxy, else ns's Sidecar without a selector, else the root namespace's
// without a selector; nil when none applies. Where several tie (Istio
// refuses that configuration and takes the oldest), the first by name
// wins, so that every control plane replica picks the same one.
// sidecars come in snapshot order (namespace, then name).
func Select(sidecars []config.Resource, ns string, labels map[string]string, root string) *Scope {
	var withSelector, nsDefault, rootDefault *config.Resource
	for i := range sidecars {
		r := &sidecars[i]
		sc, ok := r.Spec.(*networking.Sidecar)
		if !ok {
			continue
		}
		sel := sc.GetWorkloadSelector()
		switch {
		case r.Namespace == ns && sel != nil:
			if withSelector == nil && labelsel.Matches(sel.GetLabels(), labels) {
				withSelector = r
			}
		case r.Namespace == ns:
			if nsDefault == nil {
				nsDefault = r
			}
		case r.Namespace == root && sel == nil:
			if rootDefault == nil {
				rootDefault = r
			}
		}
	}
	for _, r := range []*config.Resource{withSelector, nsDefault, rootDefault} {
		if r != nil {
			return compile(r)
		}
	}
	return nil
}

func compile(r *config.Resource) *Scope {
	sc := r.Spec.(*networking.Sidecar)
	s := &Scope{Key: r.Key(), all: len(sc.GetEgress()) == 0}
	if otp := sc.GetOutboundTrafficPolicy(); otp != nil {
		s.OutboundTrafficPolicy = otp.GetMode().String()
	}
	for _, e := range sc.GetEgress() {
		for _, h := range e.GetHosts() {
			ns, name, ok := strings.Cut(h, "/")
			if !ok {
				continue // validation refuses it
			}
			s.hosts = append(s.hosts, host{ns: ns, name: strings.ToLower(strings.TrimSuffix(name, "."))})
		}
	}
	return s
}

// Allows reports whether the service hostname, of namespace svcNS, is
// visible to a proxy of namespace proxyNS under s. A nil Scope allows
// everything.
func (s *Scope) Allows(hostname, svcNS, proxyNS string) bool {
	if s == nil || s.all {
		return true
	}
	hostname = strings.ToLower(strings.TrimSuffix(hostname, "."))
	for _, h := range s.hosts {
		switch h.ns {
		case "~":
			continue
		case "*":
		case ".":
			if svcNS != proxyNS {
				continue
			}
		default:
			if svcNS != h.ns {
				continue
			}
		}
		if nameMatches(h.name, hostname) {
			return true
		}
	}
	return false
}

func nameMatches(pattern, hostname string) bool {
	switch {
	case pattern == "*":
		return true
	case strings.HasPrefix(pattern, "*."):
		return strings.HasSuffix(hostname, pattern[1:]) && len(hostname) > len(pattern)-1
	}
	return pattern == hostname
}
