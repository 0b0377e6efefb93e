package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"sync"

	"github.com/zmesh/zmesh/internal/registry"
	vroute "github.com/zmesh/zmesh/internal/route"
	"github.com/zmesh/zmesh/internal/telemetry"
)

// Transparent capture, outbound side.
//
// With Config.OriginalDst set, the outbound listener also takes the app's
// connections that the kernel redirected to it (the app has no proxy
// setting; Istio's port 15001). Each one's original destination decides
// where it goes, as Envoy's outbound listener does:
//
//   - a service's virtual address at one of its ports, or one of its
//     endpoints' addresses, is that service; its port's declared protocol
//     (portProtocol) says how to carry the connection, without looking at
//     it when it is TCP, so that server-first protocols work;
//   - otherwise the first bytes tell (sniff): HTTP goes through the
//     outbound HTTP path (routed by Host, else by the original
//     destination; authorization, metrics, mTLS with secure naming), TLS
//     the app originates is passed through untouched, routed by its SNI,
//     and anything else is opaque TCP;
//   - opaque TCP and TLS to a mesh service ride the mTLS TCP stream
//     (ALPN zmesh-tcp) to one of its endpoints;
//   - a destination outside the mesh follows outboundTrafficPolicy:
//     ALLOW_ANY passes it through to the original destination,
//     REGISTRY_ONLY closes it (Istio's BlackHoleCluster). Loopback
//     addresses and the workload's own address are not exempt: only what
//     the registry knows is reachable.
//
// A connection addressed to the listener itself was not redirected: it
// is the app using the listener as its HTTP proxy, served as before.

// capturedKey keys the original destination of a captured connection in
// its requests' contexts.
type capturedKey struct{}

// capturedDst returns the original destination of the captured
// connection a request arrived on; false when it was not captured.
func capturedDst(ctx context.Context) (netip.AddrPort, bool) {
	dst, ok := ctx.Value(capturedKey{}).(netip.AddrPort)
	return dst, ok
}

// connContext is the outbound server's ConnContext: it records the
// original destination of captured connections.
func (o *outbound) connContext(ctx context.Context, c net.Conn) context.Context {
	if rc, ok := c.(*replayConn); ok && rc.dst.IsValid() {
		return context.WithValue(ctx, capturedKey{}, rc.dst)
	}
	return ctx
}

// run serves the outbound listener until ctx is done. Without capture the
// HTTP server serves it directly; with capture, each accepted connection
// is looked at first, and those that are not HTTP never reach the server.
func (o *outbound) run(ctx context.Context, ln net.Listener) error {
	if o.p.cfg.OriginalDst == nil {
		return o.srv.Serve(ln)
	}
	conns := newConnListener(ln.Addr())
	var wg sync.WaitGroup
	var serveErr error
	wg.Go(func() {
		if err := o.srv.Serve(conns); err != nil && !errors.Is(err, http.ErrServerClosed) {
			serveErr = err
		}
	})
	err := acceptLoop(ctx, ln, o.p.log, "outbound", func(c net.Conn) {
		wg.Go(func() { o.accept(ctx, c, conns) })
	})
	conns.Close()
	wg.Wait()
	if err == nil {
		err = serveErr
	}
	return err
}

// accept serves one connection of the outbound listener: to the HTTP
// server when it was not redirected, else as its original destination
// says (see serveCaptured).
func (o *outbound) accept(ctx context.Context, c net.Conn, conns *connListener) {
	dst, err := o.p.cfg.OriginalDst(c)
	local, _ := netip.ParseAddrPort(c.LocalAddr().String())
	if err != nil || unmapPort(dst) == unmapPort(local) {
		conns.push(c) // the app's HTTP proxy, as without capture
		return
	}
	// Tracked from now on, detection included, so that a drain waits for
	// it and closes it when its time is up.
	st := o.streams.add(c)
	if st == nil {
		return
	}
	defer st.end()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	handedOff := o.serveCaptured(ctx, c, unmapPort(dst), conns)
	if !handedOff {
		stop()
		c.Close()
		return
	}
	if !stop() {
		c.Close() // shutting down
	}
}

// serveCaptured routes one captured connection to dst (see the comment at
// the top of this file). It reports whether it handed c to the HTTP
// server, which then owns it; otherwise c is done with on return.
func (o *outbound) serveCaptured(ctx context.Context, c net.Conn, dst netip.AddrPort, conns *connListener) bool {
	log := o.p.log.With("dst", dst.String())
	st := o.p.state.Load()
	if st == nil {
		log.Debug("captured connection refused: no configuration yet")
		return false
	}
	rt, port := st.routes.byDst(dst)
	proto := protoUnknown
	if port != nil {
		proto = portProtocol(*port)
	}
	var sni string
	var early []byte
	switch proto {
	case protoTCP, protoHTTP1:
		// Declared: taken as it is, without waiting for a byte.
	default:
		wait := o.p.detect
		if proto == protoTLS {
			wait = handshakeTimeout // a TLS client speaks first
		}
		var err error
		if proto, sni, early, err = detect(c, wait); err != nil {
			return false
		}
	}
	if proto.isHTTP() {
		// Through the HTTP path, which routes by Host and falls back to
		// dst (outbound.route).
		return conns.push(&replayConn{Conn: c, early: early, dst: dst})
	}
	if proto == protoTLS && sni != "" {
		// The app's own TLS, routed by the name it asks for.
		if byName := st.routes.lookup(sni); byName != nil {
			rt = byName
		}
	}
	to, decided := o.streamRoute(st, rt, sni, &vroute.Stream{Port: uint32(dst.Port()), Dst: dst.Addr(), SNI: sni})
	if decided && to.rt == nil {
		return false
	}
	down := &replayConn{Conn: c, early: early}
	if to.rt != nil {
		o.captureToService(ctx, down, to.rt, to.subset, proto, to.portOr(servicePort(port, dst)))
		return false
	}
	if st.registryOnly {
		log.Info("captured connection refused: outboundTrafficPolicy is REGISTRY_ONLY and the destination is not a mesh service", "protocol", proto.String(), "sni", sni)
		o.p.metrics.TCPOpened(telemetry.TCPLabels{Reporter: telemetry.ReporterSource, Source: o.self, Service: blackHoleCluster, Security: telemetry.SecurityNone}).Closed(0, 0)
		return false
	}
	if o.isSelfDst(dst) {
		log.Warn("captured connection refused: it is addressed to the proxy itself")
		return false
	}
	up, err := dial(ctx, newDialer(), dst.String())
	if err != nil {
		log.Warn("passthrough failed", "err", err)
		return false
	}
	o.relayConn(down, up, telemetry.TCPLabels{
		Reporter: telemetry.ReporterSource,
		Source:   o.self,
		Service:  dst.Addr().String(),
		Security: telemetry.SecurityNone,
	})
	return false
}

// captureToService relays a captured connection that is not HTTP to an
// endpoint of rt: an mTLS TCP stream when it has a proxy, plain TCP
// otherwise. The app's bytes, its own TLS included, pass untouched.
func (o *outbound) captureToService(ctx context.Context, down net.Conn, rt *route, subset string, proto protocol, port uint32) {
	ep, pool := rt.pickAt(subset, port)
	if ep == nil || ep.refuse != "" {
		reason := "no endpoints"
		if ep != nil {
			reason = ep.refuse
		}
		o.p.log.Warn("captured connection failed", "service", rt.hostname, "reason", reason)
		return
	}
	labels := telemetry.TCPLabels{
		Reporter:    telemetry.ReporterSource,
		Source:      o.self,
		Destination: telemetry.Peer{Workload: ep.workload, Namespace: ep.namespace, Principal: ep.uri},
		Service:     rt.hostname,
		Security:    telemetry.SecurityNone,
	}
	if ep.hasProxy {
		labels.Security = telemetry.SecurityMutualTLS
	}
	if !pool.acquire(ctx) {
		o.p.log.Warn("captured connection refused", "service", rt.hostname, "reason", "connection pool is full (DestinationRule connectionPool)")
		return
	}
	defer pool.release()
	up, err := o.dialStream(pool.withConnectTimeout(ctx), ep)
	if err != nil {
		ep.health.report(http.StatusServiceUnavailable)
		o.p.log.Warn("captured connection failed", "service", rt.hostname, "upstream", ep.addr, "protocol", proto.String(), "err", err)
		return
	}
	ep.health.report(http.StatusOK)
	o.relayConn(down, up, labels)
}

// relayConn relays bytes between a captured connection and its upstream
// until the stream ends or the proxy shuts down (which closes down, see
// accept). It owns up; down is closed too.
func (o *outbound) relayConn(down, up net.Conn, labels telemetry.TCPLabels) {
	defer down.Close()
	defer up.Close()
	tcp := o.p.metrics.TCPOpened(labels)
	sent, received := splice(down, up, nil, o.p.tcpIdle)
	tcp.Closed(sent, received)
}

// isSelfDst reports whether dst is one of the proxy's own listeners, where
// a passthrough would loop. A listener on the unspecified address is at
// every local address, not at every address: another pod's listener on
// the same port is not this proxy's.
func (o *outbound) isSelfDst(dst netip.AddrPort) bool {
	d := dst.Addr().Unmap()
	for _, ln := range o.p.listeners() {
		ap, err := netip.ParseAddrPort(ln.Addr().String())
		if err != nil || ap.Port() != dst.Port() {
			continue
		}
		a := ap.Addr().Unmap()
		if a == d || d.IsLoopback() || a.IsUnspecified() && isLocalAddr(d) {
			return true
		}
	}
	return false
}

// isLocalAddr reports whether a is an address of this network namespace's
// interfaces. Read when asked: it is only asked of a connection to one of
// the proxy's ports, and addresses come and go.
func isLocalAddr(a netip.Addr) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return true // unknown: assume a loop rather than risk one
	}
	for _, ia := range addrs {
		if n, ok := ia.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap() == a {
				return true
			}
		}
	}
	return false
}

// servicePort is the service port a captured connection was addressed
// to: the declared port its destination matched, else the destination's
// own port.
func servicePort(p *registry.Port, dst netip.AddrPort) uint32 {
	if p != nil {
		return p.Number
	}
	return uint32(dst.Port())
}
