package proxy

import (
	"net"
	"net/netip"
	"strconv"
	"strings"

	vroute "github.com/zmesh/zmesh/internal/route"
)

// streamRoute applies the VirtualServices to a TCP stream (or the app's
// own TLS, s.SNI set) to the service svc (nil: none) or host: its tls
// routes by SNI, else its tcp routes by port. It returns the service to
// relay to, narrowed to the destination's subset, and whether a
// VirtualService decided; nil and true means it routes to what is not a
// mesh service, and the stream must be refused.
func (o *outbound) streamRoute(st *state, svc *route, host string, s *vroute.Stream) (*route, bool) {
	vs := st.virtualServiceFor(svc, host, o.self.Namespace)
	sr := vs.MatchTLS(s)
	if sr == nil {
		sr = vs.MatchTCP(s)
	}
	if sr == nil {
		return svc, false
	}
	dst := sr.Pick(o.random())
	to := st.routes.lookup(dst.Host)
	if to == nil {
		o.p.log.Warn("stream refused: its VirtualService routes to what is not a mesh service", "virtualService", vs.Name, "destination", dst.Host)
		return nil, true
	}
	return to.subset(dst), true
}

// connectTarget is the stream a CONNECT to hostport opens: its port (443
// when it names none) and its address when it is an IP.
func connectTarget(hostport string) *vroute.Stream {
	s := &vroute.Stream{Port: 443}
	host := hostport
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		host = h
		if n, err := strconv.ParseUint(p, 10, 16); err == nil {
			s.Port = uint32(n)
		}
	}
	if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		s.Dst = a
	}
	return s
}

// subset returns r narrowed to dst's subset: r itself when dst names
// none, a route without endpoints when the subset is unknown.
func (r *route) subset(dst *vroute.Destination) *route {
	if dst.Subset == "" {
		return r
	}
	out := &route{hostname: r.hostname, name: r.name, namespace: r.namespace, ports: r.ports}
	if dst.Resolved {
		for _, ep := range r.endpoints {
			if hasLabels(ep.labels, dst.Labels) {
				out.endpoints = append(out.endpoints, ep)
			}
		}
	}
	return out
}
