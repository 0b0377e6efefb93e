package proxy

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"time"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/zmesh/zmesh/internal/authn"
	"github.com/zmesh/zmesh/internal/authz"
	"github.com/zmesh/zmesh/internal/config"
	vroute "github.com/zmesh/zmesh/internal/route"
	"github.com/zmesh/zmesh/internal/telemetry"
)

// compileTCPRoutes compiles each VirtualService of bound on its own, in
// the order a route table gives them precedence (the gateway's namespace
// first, then by namespace and name), so that a TCP stream, which names
// no host, can try their tcp routes in turn.
func compileTCPRoutes(bound []config.Resource, cfg vroute.Config, ns string) ([]*vroute.VirtualService, error) {
	ordered := append([]config.Resource(nil), bound...)
	sort.SliceStable(ordered, func(i, j int) bool {
		oi, oj := ordered[i].Namespace == ns, ordered[j].Namespace == ns
		if oi != oj {
			return oi
		}
		if ordered[i].Namespace != ordered[j].Namespace {
			return ordered[i].Namespace < ordered[j].Namespace
		}
		return ordered[i].Name < ordered[j].Name
	})
	var out []*vroute.VirtualService
	for _, r := range ordered {
		t, err := vroute.Compile([]config.Resource{r}, cfg)
		if err != nil {
			return nil, err
		}
		vs, _ := r.Spec.(*networking.VirtualService)
		if len(vs.GetHosts()) == 0 {
			continue
		}
		// The table holds r alone: any name its first host matches
		// finds it ("*" and "*.suffix" match "x" and "x.suffix").
		h := vroute.Host(vs.GetHosts()[0], r.Namespace, cfg.DNSDomain)
		if strings.HasPrefix(h, "*") {
			h = "x" + h[1:]
		}
		if c := t.Lookup(h); c != nil && len(c.TCP) > 0 {
			out = append(out, c)
		}
	}
	return out, nil
}

// serveGatewayStream serves one connection of a TCP or TLS (PASSTHROUGH)
// gateway port n, with Istio's semantics: on a TLS port the ClientHello's
// SNI picks the server and the VirtualService's tls route (a connection
// without SNI is refused), on a TCP port the first server's VirtualServices'
// tcp routes match by port. The gateway's AuthorizationPolicies decide
// the connection first, as for TCP at a sidecar: no HTTP attribute (a
// rule that needs one does not match), the source its address (the
// client's own TLS, if any, is not the gateway's to read), the
// destination port n and, on a TLS port, the SNI. The bytes, the
// client's TLS included, are relayed untouched. It owns c.
func (p *Proxy) serveGatewayStream(ctx context.Context, c net.Conn, n uint32) {
	start := time.Now()
	defer c.Close()
	entry := telemetry.AccessEntry{Direction: "gateway", Protocol: "tcp", Code: 0}
	pr := &peer{appPort: n}
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		pr.ip = ap.Addr().Unmap()
		entry.Source = pr.ip.String()
	}
	if ap, err := netip.ParseAddrPort(c.LocalAddr().String()); err == nil {
		pr.local = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	done := func(flags, reason string) {
		entry.Flags, entry.Reason, entry.Duration = flags, reason, time.Since(start)
		p.access.Log(ctx, &entry)
	}
	st := p.state.Load()
	if st == nil || st.gateway == nil || st.gateway.ports[n] == nil {
		done(flagNoRoute, "no configuration for this port")
		return
	}
	gp := st.gateway.ports[n]
	var early []byte
	proto := protoTCP
	down := c
	if gp.terminate {
		tc, err := p.terminateGatewayTLS(ctx, c, n)
		if err != nil {
			done(flagDownstreamReset, "TLS handshake: "+err.Error())
			return
		}
		down = tc
		pr.sni = tc.ConnectionState().ServerName
		entry.Protocol, entry.Authority = "tls", pr.sni
	} else if gp.protocol == "TLS" {
		var err error
		var sni string
		if proto, sni, early, err = detect(c, handshakeTimeout); err != nil || proto != protoTLS || sni == "" {
			done(flagNoRoute, "a TLS port takes TLS with a server name (SNI)")
			return
		}
		pr.sni = sni
		entry.Protocol, entry.Authority = "tls", sni
	}
	srv := gp.server(pr.sni)
	if srv == nil {
		done(flagNoRoute, "no Gateway server takes server name "+pr.sni)
		return
	}
	r := &authz.Request{SourceIP: pr.ip, DestinationIP: pr.local.Addr(), DestinationPort: uint16(n), SNI: pr.sni}
	if provider, ok := st.set.Custom(r); ok {
		r.CustomVerdict = p.extAuthz.checkConnection(ctx, st, provider, pr)
	}
	res := st.set.Request(ctx, r, authn.RequestView{}, p.jwks, p.now())
	entry.Policy, entry.Audit, entry.AuditPolicy = res.Policy, res.Authz.Audit, res.Authz.AuditPolicy
	if !res.Allow {
		p.metrics.Denied(res.Policy)
		done(flagUnauthorized, res.Reason)
		return
	}
	s := &vroute.Stream{Port: n, Dst: pr.local.Addr(), SNI: pr.sni}
	var sr *vroute.StreamRoute
	if proto == protoTLS {
		sr = srv.routes.Lookup(pr.sni).MatchTLS(s)
	} else {
		for _, vs := range srv.tcp {
			if sr = vs.MatchTCP(s); sr != nil {
				break
			}
		}
	}
	if sr == nil {
		done(flagNoRoute, "no VirtualService bound to "+srv.gateway+" routes this stream")
		return
	}
	dst := sr.Pick(p.out.random())
	entry.Destination = dst.Host
	to := st.routes.lookup(dst.Host)
	if to == nil {
		done(flagNoRoute, "destination "+dst.Host+" is not a service the gateway knows")
		return
	}
	port := dst.Port
	if port == 0 {
		port = n
	}
	upstream, flags, reason := p.relayGatewayStream(ctx, &replayConn{Conn: down, early: early}, to, dst.Subset, port, &entry)
	entry.Upstream = upstream
	done(flags, reason)
}

// relayGatewayStream relays down to an endpoint of rt's subset at port:
// over the mesh's mutual TLS, with the gateway's identity, when the
// endpoint has a proxy, else plain TCP. It returns the endpoint's
// address, and the flags and reason of a failure.
func (p *Proxy) relayGatewayStream(ctx context.Context, down net.Conn, rt *route, subset string, port uint32, entry *telemetry.AccessEntry) (upstream, flags, reason string) {
	o := p.out
	ep, pool := rt.pickAt(subset, port)
	if ep == nil || ep.refuse != "" {
		reason := "no endpoints"
		if ep != nil {
			reason = ep.refuse
		}
		return "", flagNoHealthyUp, reason
	}
	if !pool.acquire(ctx) {
		return "", flagOverflow, "connection pool is full (DestinationRule connectionPool)"
	}
	defer pool.release()
	up, err := o.dialStream(pool.withConnectTimeout(ctx), ep)
	if err != nil {
		ep.health.report(http.StatusServiceUnavailable)
		return ep.addr, flagUpstreamFailure, err.Error()
	}
	ep.health.report(http.StatusOK)
	defer up.Close()
	stop := context.AfterFunc(ctx, func() { up.Close(); down.Close() })
	defer stop()
	labels := telemetry.TCPLabels{
		Reporter:    telemetry.ReporterSource,
		Source:      o.self,
		Destination: telemetry.Peer{Workload: ep.workload, Namespace: ep.namespace, Principal: ep.uri},
		Service:     rt.hostname,
		Security:    telemetry.SecurityNone,
	}
	if ep.hasProxy {
		labels.Security = telemetry.SecurityMutualTLS
		entry.Peer = ep.uri
	}
	tcp := p.metrics.TCPOpened(labels)
	sent, received := splice(down, up, nil, p.tcpIdle)
	tcp.Closed(sent, received)
	entry.BytesIn, entry.BytesOut = received, sent
	return ep.addr, "", ""
}

// terminateGatewayTLS completes the TLS handshake of a connection to a
// terminating TLS port n with the credential of the server its SNI names
// (gatewayTLS), offering no ALPN: what follows is the client's own
// protocol, relayed as TCP. It is bounded by handshakeTimeout.
func (p *Proxy) terminateGatewayTLS(ctx context.Context, c net.Conn, n uint32) (*tls.Conn, error) {
	base := p.gatewayTLS(n, false)
	conf := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			cfg, err := base.GetConfigForClient(hello)
			if err != nil || cfg == nil {
				return cfg, err
			}
			cfg = cfg.Clone()
			cfg.NextProtos = nil
			return cfg, nil
		},
	}
	tc := tls.Server(c, conf)
	hctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		return nil, err
	}
	return tc, nil
}
