package route

import (
	"fmt"
	"net/netip"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/zmesh/zmesh/internal/labelsel"
)

// StreamRoute is one compiled tcp or tls route: where a TCP stream (or
// the app's own TLS, by its SNI) goes, by weight. Streams are opaque:
// there is nothing to rewrite, retry or mirror.
type StreamRoute struct {
	matchAll     bool
	matches      []streamMatch
	Destinations []Destination
	totalWeight  uint64
}

// streamMatch is one L4MatchAttributes or TLSMatchAttributes; those that
// can never apply to this proxy (sourceLabels, sourceNamespace, gateways)
// are left out at compile time.
type streamMatch struct {
	port    uint32
	subnets []netip.Prefix
	sni     []string // tls: the request's SNI must match one (exact or *.suffix)
}

// Stream is what stream routes match on.
type Stream struct {
	Port uint32
	// Dst is the address the app connected to, when known (captured
	// connections, CONNECT to an IP): destinationSubnets match it.
	Dst netip.Addr
	// SNI is the server name of the app's TLS ClientHello ("" for TCP).
	SNI string
}

// MatchTCP returns the first tcp route of vs matching s, or nil.
func (vs *VirtualService) MatchTCP(s *Stream) *StreamRoute {
	if vs == nil {
		return nil
	}
	return matchStream(vs.TCP, s)
}

// MatchTLS returns the first tls route of vs matching s (whose SNI must
// be set), or nil.
func (vs *VirtualService) MatchTLS(s *Stream) *StreamRoute {
	if vs == nil || s.SNI == "" {
		return nil
	}
	return matchStream(vs.TLS, s)
}

func matchStream(routes []*StreamRoute, s *Stream) *StreamRoute {
	for _, rt := range routes {
		if rt.matchAll {
			return rt
		}
		for i := range rt.matches {
			if rt.matches[i].matches(s) {
				return rt
			}
		}
	}
	return nil
}

func (m *streamMatch) matches(s *Stream) bool {
	if m.port != 0 && m.port != s.Port {
		return false
	}
	if len(m.subnets) > 0 {
		in := false
		for _, p := range m.subnets {
			in = in || (s.Dst.IsValid() && p.Contains(s.Dst.Unmap()))
		}
		if !in {
			return false
		}
	}
	if len(m.sni) > 0 {
		sni := canonical(s.SNI)
		ok := false
		for _, h := range m.sni {
			ok = ok || hostMatches(h, sni)
		}
		if !ok {
			return false
		}
	}
	return true
}

// hostMatches reports whether name matches pattern: equal, or pattern
// "*.suffix" and name longer, ending in ".suffix"; "*" matches any.
func hostMatches(pattern, name string) bool {
	if pattern == "*" || pattern == name {
		return true
	}
	if suffix, ok := cutWildcard(pattern); ok {
		return len(name) > len(suffix) && name[len(name)-len(suffix):] == suffix
	}
	return false
}

func cutWildcard(p string) (string, bool) {
	if len(p) > 1 && p[0] == '*' {
		return p[1:], true
	}
	return "", false
}

// Pick returns the destination for the uniformly random n, by weight.
func (rt *StreamRoute) Pick(n uint64) *Destination {
	return pick(rt.Destinations, rt.totalWeight, n)
}

func pick(dests []Destination, total, n uint64) *Destination {
	if total == 0 {
		return nil
	}
	n %= total
	for i := range dests {
		if n < uint64(dests[i].Weight) {
			return &dests[i]
		}
		n -= uint64(dests[i].Weight)
	}
	return nil
}

// l4Source is what TCP and TLS matches share.
type l4Source interface {
	GetPort() uint32
	GetDestinationSubnets() []string
	GetSourceLabels() map[string]string
	GetSourceNamespace() string
	GetGateways() []string
}

func compileStreamMatch(m l4Source, sni []string, ns string, cfg Config) (streamMatch, bool, error) {
	var out streamMatch
	if !labelsel.Matches(m.GetSourceLabels(), cfg.Labels) {
		return out, false, nil
	}
	if s := m.GetSourceNamespace(); s != "" && s != cfg.Namespace {
		return out, false, nil
	}
	if !cfg.boundBy(m.GetGateways(), ns) {
		return out, false, nil
	}
	out.port = m.GetPort()
	for _, s := range m.GetDestinationSubnets() {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return out, false, fmt.Errorf("destinationSubnets: %q: %w", s, err)
			}
			p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		out.subnets = append(out.subnets, p.Masked())
	}
	for _, h := range sni {
		out.sni = append(out.sni, Host(h, ns, cfg.DNSDomain))
	}
	return out, true, nil
}

// compileStreamRoute compiles the destinations of a tcp or tls route
// and its matches (already compiled); keep is false when it has matches
// and none can apply to this proxy.
func compileStreamRoute(dests []*networking.RouteDestination, matches []streamMatch, nMatches int, ns string, cfg Config) (*StreamRoute, bool, error) {
	if nMatches > 0 && len(matches) == 0 {
		return nil, false, nil
	}
	rt := &StreamRoute{matchAll: nMatches == 0, matches: matches}
	for _, d := range dests {
		if d.GetWeight() < 0 {
			return nil, false, fmt.Errorf("negative weight")
		}
		c := destination(d.GetDestination(), ns, cfg)
		c.Weight = uint32(d.GetWeight())
		rt.totalWeight += uint64(c.Weight)
		rt.Destinations = append(rt.Destinations, c)
	}
	switch {
	case len(rt.Destinations) == 0:
		return nil, false, fmt.Errorf("no destination")
	case len(rt.Destinations) == 1:
		rt.Destinations[0].Weight, rt.totalWeight = 1, 1
	case rt.totalWeight == 0:
		return nil, false, fmt.Errorf("every destination has weight 0")
	}
	return rt, true, nil
}

// compileStreams compiles vs's tcp and tls routes into out.
func compileStreams(out *VirtualService, vs *networking.VirtualService, ns string, cfg Config) error {
	for i, r := range vs.GetTcp() {
		var ms []streamMatch
		for _, m := range r.GetMatch() {
			c, ok, err := compileStreamMatch(m, nil, ns, cfg)
			if err != nil {
				return fmt.Errorf("tcp[%d]: %w", i, err)
			}
			if ok {
				ms = append(ms, c)
			}
		}
		rt, keep, err := compileStreamRoute(r.GetRoute(), ms, len(r.GetMatch()), ns, cfg)
		if err != nil {
			return fmt.Errorf("tcp[%d]: %w", i, err)
		}
		if keep {
			out.TCP = append(out.TCP, rt)
		}
	}
	for i, r := range vs.GetTls() {
		var ms []streamMatch
		for _, m := range r.GetMatch() {
			c, ok, err := compileStreamMatch(m, m.GetSniHosts(), ns, cfg)
			if err != nil {
				return fmt.Errorf("tls[%d]: %w", i, err)
			}
			if ok {
				ms = append(ms, c)
			}
		}
		rt, keep, err := compileStreamRoute(r.GetRoute(), ms, len(r.GetMatch()), ns, cfg)
		if err != nil {
			return fmt.Errorf("tls[%d]: %w", i, err)
		}
		if keep {
			out.TLS = append(out.TLS, rt)
		}
	}
	return nil
}
