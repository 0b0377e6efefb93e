package proxy

import (
	"net"
	"net/netip"
	"strconv"
	"strings"

	vroute "github.com/zmesh/zmesh/internal/route"
)

// streamDest is where a stream goes: a service (nil: none), the subset
// of its DestinationRule ("" for every endpoint), and the service port
// (0: the one the app asked for).
type streamDest struct {
	rt     *route
	subset string
	port   uint32
}

// portOr is d's port, else asked.
func (d streamDest) portOr(asked uint32) uint32 {
	if d.port != 0 {
		return d.port
	}
	return asked
}

// streamRoute applies the VirtualServices to a TCP stream (or the app's
// own TLS, s.SNI set) to the service svc (nil: none) or host: its tls
// routes by SNI, else its tcp routes by port. It returns where to relay
// the stream, and whether a VirtualService decided; no service and true
// means it routes to what is not a mesh service, and the stream must be
// refused.
func (o *outbound) streamRoute(st *state, svc *route, host string, s *vroute.Stream) (streamDest, bool) {
	vs := st.virtualServiceFor(svc, host, o.self.Namespace)
	sr := vs.MatchTLS(s)
	if sr == nil {
		sr = vs.MatchTCP(s)
	}
	if sr == nil {
		return streamDest{rt: svc}, false
	}
	dst := sr.Pick(o.random())
	to := st.routes.lookup(dst.Host)
	if to == nil {
		o.p.log.Warn("stream refused: its VirtualService routes to what is not a mesh service", "virtualService", vs.Name, "destination", dst.Host)
		return streamDest{}, true
	}
	return streamDest{rt: to, subset: dst.Subset, port: dst.Port}, true
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
