package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"

	"golang.org/x/net/http2"

	"github.com/zmesh/zmesh/internal/rawtcp"
)

// gatewayListeners opens and closes the gateway's listeners as pushes
// change its Gateways' ports. Apply hands it each new state (push); its
// run loop, owned by Proxy.Run, reconciles the listeners and owns their
// servers' goroutines.
type gatewayListeners struct {
	p      *Proxy
	cfg    GatewayConfig
	update chan *state // latest state not yet reconciled; capacity 1
	// reconciled is set once the first state is (owned by run).
	reconciled bool

	mu   sync.Mutex
	open map[uint32]*gatewayListener
	wg   sync.WaitGroup
	// creds are the pushed credentials of the last state pushed, to
	// tell a rotation; push's callers are serialised (Apply).
	creds map[string]*servedCredential
}

// gatewayListener is one bound port and the server on it: an HTTP
// server, or for a TCP or TLS passthrough port (stream) the accept loop
// of serveGatewayStream, whose connections close with it.
type gatewayListener struct {
	ln     net.Listener
	srv    *http.Server // nil for a stream port
	tls    bool
	mesh   bool
	stream bool

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	// ctx is the streams' context, cancelled by close: a relay's
	// upstream is closed with it, not left to its idle time-out.
	ctx    context.Context
	cancel context.CancelFunc
}

// close stops the listener and what it serves.
func (l *gatewayListener) close() {
	if l.srv != nil {
		l.srv.Close()
		return
	}
	l.ln.Close()
	l.cancel()
	l.mu.Lock()
	l.closed = true
	for c := range l.conns {
		c.Close()
	}
	l.mu.Unlock()
}

// track adds c to the connections closed with l; false when l is closed.
func (l *gatewayListener) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.conns[c] = struct{}{}
	return true
}

func (l *gatewayListener) untrack(c net.Conn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
}

func newGatewayListeners(p *Proxy, cfg GatewayConfig) *gatewayListeners {
	if cfg.Host == "" {
		cfg.Host = "0.0.0.0"
	}
	return &gatewayListeners{p: p, cfg: cfg, update: make(chan *state, 1), open: map[uint32]*gatewayListener{}}
}

// push hands st, now in force, to the run loop, replacing a state not
// yet taken. First, at once, a rotated credential closes the idle
// connections its TLS originations made with the old one.
func (g *gatewayListeners) push(st *state) {
	if st.gateway != nil {
		g.p.closeRotatedOrigins(rotatedCredentials(g.creds, st.gateway.creds))
		g.creds = st.gateway.creds
	}
	select {
	case <-g.update:
	default:
	}
	g.update <- st
}

// run reconciles the listeners with each pushed state until ctx is done,
// then closes them all and waits for their servers.
func (g *gatewayListeners) run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			g.mu.Lock()
			for n, l := range g.open {
				l.close()
				delete(g.open, n)
			}
			g.mu.Unlock()
			g.wg.Wait()
			return nil
		case st := <-g.update:
			g.reconcile(st)
			if !g.reconciled {
				// The ports of the first configuration are open: what
				// the previous process served beyond them is gone.
				g.reconciled = true
				g.p.releaseUnclaimedListeners()
			}
		}
	}
}

// reconcile opens a listener for each HTTP-carrying port of st's Gateways
// and closes those of ports gone (or whose TLS-ness changed). A port that
// cannot be bound is logged and left unserved: it fails closed.
func (g *gatewayListeners) reconcile(st *state) {
	log := g.p.log
	want := map[uint32]*gatewayPort{}
	if st.gateway != nil {
		for n, gp := range st.gateway.ports {
			if !isHTTPPort(gp) && !gp.stream {
				log.Warn("gateway port not served: zmesh gateways serve HTTP, HTTPS, HTTP2, GRPC, TCP and TLS (PASSTHROUGH) servers", "port", n, "protocol", gp.protocol)
				continue
			}
			want[n] = gp
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for n, l := range g.open {
		if gp, ok := want[n]; !ok || gp.tls != l.tls || gp.mesh != l.mesh || gp.stream != l.stream {
			l.close()
			delete(g.open, n)
			if !ok {
				// Not served by the next process either: whoever keeps
				// listeners across restarts lets it go.
				g.p.releaseListener(gatewayListenerName(n))
			}
			log.Info("gateway port closed", "port", n)
		}
	}
	for n, gp := range want {
		if _, ok := g.open[n]; ok {
			continue
		}
		addr, ok := g.cfg.Ports[n]
		if !ok {
			if n < 1024 {
				log.Error("gateway port not served: privileged, and not mapped to another address (--gateway-port)", "port", n)
				continue
			}
			addr = net.JoinHostPort(g.cfg.Host, portString(n))
		}
		ln, err := g.p.listenTCP(gatewayListenerName(n), addr)
		if err != nil {
			log.Error("gateway port not served: cannot listen", "port", n, "addr", addr, "err", err)
			continue
		}
		ln = rawtcp.Listener{Listener: ln}
		if gp.stream {
			l := &gatewayListener{ln: ln, stream: true, conns: map[net.Conn]struct{}{}}
			l.ctx, l.cancel = context.WithCancel(context.Background())
			g.open[n] = l
			g.wg.Go(func() { g.acceptStreams(l, n) })
			log.Info("gateway port listening", "port", n, "addr", ln.Addr().String(), "protocol", gp.protocol)
			continue
		}
		l := &gatewayListener{ln: ln, tls: gp.tls, mesh: gp.mesh, srv: g.server(n, gp.mesh)}
		served := ln
		if gp.tls {
			served = tls.NewListener(ln, g.p.gatewayTLS(n, gp.mesh))
		}
		g.open[n] = l
		g.wg.Go(func() {
			if err := l.srv.Serve(served); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Warn("gateway listener stopped", "port", n, "err", err)
			}
		})
		log.Info("gateway port listening", "port", n, "addr", ln.Addr().String(), "tls", gp.tls)
	}
}

// gatewayListenerName names port n's listener for Config.Listeners.
func gatewayListenerName(n uint32) string { return "gateway-" + portString(n) }

// acceptStreams serves the connections of stream port n until l closes.
func (g *gatewayListeners) acceptStreams(l *gatewayListener, n uint32) {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		if !l.track(c) {
			c.Close()
			return
		}
		g.wg.Go(func() {
			defer l.untrack(c)
			g.p.serveGatewayStream(l.ctx, c, n)
		})
	}
}

// isHTTPPort reports whether gp carries HTTP requests the gateway serves:
// HTTP, HTTP2 and GRPC in the clear, HTTPS once TLS is terminated.
func isHTTPPort(gp *gatewayPort) bool {
	switch gp.protocol {
	case "HTTP", "HTTP2", "GRPC", "HTTPS":
		return true
	}
	return false
}

// server is the HTTP server of gateway port n: each request is served by
// the state in force when it arrives. mesh is fixed for the listener's
// life (a change reopens it): on a mesh listener every handshake took
// the mesh's roots, so its callers' certificates are mesh identities.
func (g *gatewayListeners) server(n uint32, mesh bool) *http.Server {
	p := g.p
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetHTTP2(true)
	protos.SetUnencryptedHTTP2(true)
	return &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			st := p.state.Load()
			var gp *gatewayPort
			if st != nil && st.gateway != nil {
				gp = st.gateway.ports[n]
			}
			p.serveGateway(w, r, st, gp, nil, p.gatewayPeer(r, mesh))
		}),
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       serverIdleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
		Protocols:         &protos,
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: 1000, MaxReadFrameSize: 1 << 20},
	}
}

// gatewayPeer is the caller of a request on gateway port gp: its
// address, and its SPIFFE identity only on an ISTIO_MUTUAL port, where
// the handshake verified its certificate against the mesh's roots. On a
// MUTUAL port the certificate was verified against the credential's CA,
// which may sign any name: the caller is its address there.
func (p *Proxy) gatewayPeer(r *http.Request, mesh bool) *peer {
	pr := &peer{}
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		pr.ip = ap.Addr().Unmap()
	}
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if ap, err := netip.ParseAddrPort(la.String()); err == nil {
			pr.local = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		}
	}
	if r.TLS == nil {
		return pr
	}
	pr.sni = r.TLS.ServerName
	if mesh && r.TLS.HandshakeComplete {
		p.setPeerTLS(pr, *r.TLS)
	}
	return pr
}

// addr returns the bound address of gateway port n, nil while it is not
// served.
func (g *gatewayListeners) addr(n uint32) net.Addr {
	g.mu.Lock()
	defer g.mu.Unlock()
	if l := g.open[n]; l != nil {
		return l.ln.Addr()
	}
	return nil
}

// GatewayAddr returns the bound address of the gateway's listener for a
// Gateway server port, nil when the proxy is no gateway or does not serve
// that port (yet: listeners follow pushes).
func (p *Proxy) GatewayAddr(port uint32) net.Addr {
	if p.gw == nil {
		return nil
	}
	return p.gw.addr(port)
}

// gatewayALPN is what gateway TLS ports offer.
var gatewayALPN = []string{http2.NextProtoTLS, "http/1.1"}
