package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/net/http2"
)

// HBONE: TCP streams between proxies multiplexed on one mutual TLS
// connection, as Istio's HBONE carries them: HTTP/2 over mTLS on the
// tunnel port (15008), each app connection one CONNECT stream whose
// authority is the address the app connected to.
//
// Without it every app TCP connection to a peer costs a TCP connection and
// a TLS 1.3 handshake between the proxies (two ECDSA signatures and
// verifications, an ECDHE); with it, one handshake per peer serves every
// stream (bench/hbone, BenchmarkTCPStreams: ~4× cheaper per short
// connection). HTTP between proxies needs none of this: it already rides
// pooled HTTP/2 connections.
//
// A peer advertises its tunnel with its endpoint (registry.Endpoint's
// TunnelPort); a client proxy uses it for the TCP streams it opens to that
// endpoint, and falls back to a mutual TLS connection per stream (ALPN
// zmesh-tcp) when the peer has no tunnel or the tunnel cannot be reached,
// for tunnelRetryAfter. On the server, a stream is the same as a
// per-connection mTLS stream: the peer's identity is the tunnel's
// certificate, and PeerAuthentication and authorization judge each stream
// with Istio's TCP semantics.

// tunnelRetryAfter is how long a peer whose tunnel failed is reached with
// a connection per stream before the tunnel is tried again.
const tunnelRetryAfter = 30 * time.Second

// tunnelMaxStreams bounds the streams of one tunnel connection, on both
// sides; a client opens another connection to the peer beyond it.
const tunnelMaxStreams = 1000

// tunnelTLS returns the tunnel listener's TLS settings: the inbound's,
// speaking HTTP/2 only.
func (in *inbound) tunnelTLS() *tls.Config {
	conf := in.tlsConf.Clone()
	conf.NextProtos = []string{http2.NextProtoTLS}
	conf.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		if st := in.p.state.Load(); st != nil && st.serverTLS != nil {
			c := st.serverTLS.Clone()
			c.NextProtos = []string{http2.NextProtoTLS}
			return c, nil
		}
		return nil, nil
	}
	return conf
}

// runTunnel accepts tunnel connections on ln until ctx is done. It
// returns when every goroutine it started has ended.
func (in *inbound) runTunnel(ctx context.Context, ln net.Listener) error {
	conf := in.tunnelTLS()
	h2 := &http2.Server{
		MaxConcurrentStreams: tunnelMaxStreams,
		IdleTimeout:          serverIdleTimeout,
		MaxReadFrameSize:     1 << 20,
	}
	var wg sync.WaitGroup
	err := acceptLoop(ctx, ln, in.p.log, "tunnel", func(c net.Conn) {
		wg.Go(func() { in.serveTunnel(ctx, c, conf, h2) })
	})
	wg.Wait()
	return err
}

// serveTunnel serves one tunnel connection: mutual TLS, HTTP/2, CONNECT
// streams. The connection is tracked with the inbound's streams, so drain
// and shutdown close it.
func (in *inbound) serveTunnel(ctx context.Context, c net.Conn, conf *tls.Config, h2 *http2.Server) {
	defer c.Close()
	if in.p.state.Load() == nil {
		return
	}
	tracked := in.streams.add(c)
	if tracked == nil {
		return
	}
	defer tracked.end()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	c.SetDeadline(time.Now().Add(handshakeTimeout))
	tc := tls.Server(c, conf)
	err := tc.HandshakeContext(ctx)
	in.p.metrics.Handshake("server", err)
	if err != nil {
		in.p.log.Info("tunnel TLS handshake failed", "peer", c.RemoteAddr().String(), "err", err)
		return
	}
	if tc.ConnectionState().NegotiatedProtocol != http2.NextProtoTLS {
		return
	}
	c.SetDeadline(time.Time{})
	base := in.p.connContext(ctx, tc)
	h2.ServeConn(tc, &http2.ServeConnOpts{
		Context: base,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { in.tunnelStream(ctx, w, r) }),
	})
}

// tunnelStream serves one CONNECT stream of a tunnel: the authority says
// which of the app's ports it is for (with capture; without, the app's
// one port), then the stream is authorized and relayed as an mTLS TCP
// stream of the tunnel's peer.
func (in *inbound) tunnelStream(ctx context.Context, w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if r.Method != http.MethodConnect {
		http.Error(w, "the tunnel carries CONNECT only", http.StatusMethodNotAllowed)
		return
	}
	tunnel := peerFrom(r.Context())
	if tunnel == nil || !tunnel.mtls {
		http.Error(w, "no peer identity", http.StatusForbidden)
		return
	}
	dst, ok := in.p.tunnelTarget(r.Host)
	if !ok {
		in.p.log.Warn("tunnel stream refused: not one of the app's ports", "peer", tunnel.uri, "authority", r.Host)
		http.Error(w, "bad authority", http.StatusBadRequest)
		return
	}
	pr := *tunnel
	pr.appAddr, pr.appPort = in.p.appTarget(dst)
	st := in.p.state.Load()
	if res := st.set.Connection(pr.appPort, true); !res.Allow {
		in.p.log.Info("tunnel stream refused", "peer", pr.uri, "mode", res.PeerMode.String(), "peerAuthentication", res.Policy, "reason", res.Reason)
		http.Error(w, "refused", http.StatusForbidden)
		return
	}
	workload := ""
	if v := r.Header.Get(headerSourceWorkload); validWorkloadLabel(v) {
		workload = v
	}
	// Accepted: the client may send. Authorization is relayTCP's, with
	// Istio's TCP semantics: a denied stream ends with no byte, as a
	// denied mTLS connection is closed.
	s := newTunnelServerConn(w, r, tunnel)
	w.WriteHeader(http.StatusOK)
	if err := s.rc.Flush(); err != nil {
		return
	}
	defer s.Close()
	in.relayTCP(ctx, s, &pr, workload, nil, start, false)
}

// tunnelTarget returns the original destination a CONNECT authority
// names: with capture, the address the client's app connected to (its
// port picks the app's port, as a redirected connection's does); without
// capture, or for the inbound listener's own address, the zero value (the
// app's one port). It reports false for an authority that is not
// host:port or that names another of the proxy's own ports.
func (p *Proxy) tunnelTarget(authority string) (netip.AddrPort, bool) {
	ap, err := netip.ParseAddrPort(authority)
	if err != nil {
		host, port, serr := net.SplitHostPort(authority)
		n, perr := strconv.ParseUint(port, 10, 16)
		if serr != nil || perr != nil || host == "" || n == 0 {
			return netip.AddrPort{}, false
		}
		if p.cfg.OriginalDst != nil {
			return netip.AddrPort{}, false // capture addresses streams by IP
		}
		return netip.AddrPort{}, true
	}
	if p.cfg.OriginalDst == nil {
		return netip.AddrPort{}, true
	}
	ap = unmapPort(ap)
	if uint32(ap.Port()) == p.appPort {
		return ap, true
	}
	if in, err := netip.ParseAddrPort(p.inLn.Addr().String()); err == nil && in.Port() == ap.Port() {
		// The endpoint's address is the inbound listener itself (a
		// workload reached without capture): the app's one port, as a
		// connection to the listener that was not redirected.
		return netip.AddrPort{}, true
	}
	for _, ln := range p.listeners() {
		if la, err := netip.ParseAddrPort(ln.Addr().String()); err == nil && la.Port() == ap.Port() {
			return ap, false
		}
	}
	return ap, true
}

// validWorkloadLabel reports whether v may be a workload's name as a
// client proxy states it (the TCP preamble, the tunnel's header): it is
// a metrics label, so anything else is dropped.
func validWorkloadLabel(v string) bool {
	if v == "" || len(v) > 253 {
		return false
	}
	for _, r := range v {
		if !(r == '-' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z') {
			return false
		}
	}
	return true
}

// tunnelServerConn is the server's end of one CONNECT stream as a
// net.Conn: reads from the request body, writes to the response (flushed
// at once: a stream's bytes must not wait for a buffer to fill).
// CloseWrite (the app closed its side) also stops reading: an HTTP/2
// handler ends its stream by returning, and Go's server then resets the
// client's half, so the client sees the end of the stream as the app's
// close.
type tunnelServerConn struct {
	w     http.ResponseWriter
	rc    *http.ResponseController
	body  io.ReadCloser
	local net.Addr
	peer  net.Addr

	mu     sync.Mutex
	closed bool
}

func newTunnelServerConn(w http.ResponseWriter, r *http.Request, pr *peer) *tunnelServerConn {
	return &tunnelServerConn{w: w, rc: http.NewResponseController(w), body: r.Body,
		local: tcpAddr(pr.local), peer: tcpAddr(netip.AddrPortFrom(pr.ip, 0))}
}

func tcpAddr(ap netip.AddrPort) net.Addr { return net.TCPAddrFromAddrPort(ap) }

func (s *tunnelServerConn) Read(b []byte) (int, error) { return s.body.Read(b) }

func (s *tunnelServerConn) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, net.ErrClosed
	}
	n, err := s.w.Write(b)
	if err == nil {
		err = s.rc.Flush()
	}
	return n, err
}

func (s *tunnelServerConn) CloseWrite() error { return s.Close() }

func (s *tunnelServerConn) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.body.Close()
}

func (s *tunnelServerConn) LocalAddr() net.Addr  { return s.local }
func (s *tunnelServerConn) RemoteAddr() net.Addr { return s.peer }

// Deadlines: a stream is relayed with splice's idle time-out, never read
// with a deadline (relayTCP is called with silent false).
func (s *tunnelServerConn) SetDeadline(time.Time) error      { return nil }
func (s *tunnelServerConn) SetReadDeadline(time.Time) error  { return nil }
func (s *tunnelServerConn) SetWriteDeadline(time.Time) error { return nil }

// tunnels are a client proxy's HBONE connections, one (or more, past
// tunnelMaxStreams) per peer tunnel address and identity.
type tunnels struct {
	o  *outbound
	h2 *http2.Transport

	mu    sync.Mutex
	peers map[tunnelKey]*tunnelPeer
}

type tunnelKey struct {
	addr string
	id   spiffeid.ID
}

// tunnelPeer is one peer's tunnel: its connections, and until when it is
// reached without one after a failure.
type tunnelPeer struct {
	mu       sync.Mutex // held while dialing, so that one dial serves all
	conns    []*http2.ClientConn
	down     time.Time
	lastFail error
}

func newTunnels(o *outbound) *tunnels {
	return &tunnels{o: o, peers: map[tunnelKey]*tunnelPeer{},
		h2: &http2.Transport{
			// A stream's first bytes go out at once.
			WriteByteTimeout: handshakeTimeout,
			ReadIdleTimeout:  30 * time.Second, // a PING finds a dead peer
			PingTimeout:      handshakeTimeout,
			MaxReadFrameSize: 1 << 20,
		}}
}

// errNoTunnel says a stream must take a connection of its own: the peer
// has no tunnel, or its tunnel failed recently.
var errNoTunnel = errors.New("no tunnel to the peer")

// dial opens a stream to ep over its peer's tunnel, or returns
// errNoTunnel (wrapped) when the caller must open a connection per stream.
func (t *tunnels) dial(ctx context.Context, ep *endpoint) (net.Conn, error) {
	host, _, err := net.SplitHostPort(ep.addr)
	if err != nil || ep.tunnelPort == 0 {
		return nil, errNoTunnel
	}
	key := tunnelKey{addr: net.JoinHostPort(host, strconv.Itoa(int(ep.tunnelPort))), id: ep.id}
	t.mu.Lock()
	tp := t.peers[key]
	if tp == nil {
		tp = &tunnelPeer{}
		t.peers[key] = tp
	}
	t.mu.Unlock()
	for attempt := 0; attempt < 2; attempt++ {
		cc, err := t.conn(ctx, tp, key)
		if err != nil {
			return nil, err
		}
		c, err := t.open(ctx, cc, ep)
		if err == nil {
			return c, nil
		}
		var refused *streamRefused
		if errors.As(err, &refused) || ctx.Err() != nil {
			return nil, err
		}
		// The connection failed under the request (the peer went away,
		// a GOAWAY): once more on a new one.
		t.o.p.log.Debug("tunnel stream failed, retrying", "tunnel", key.addr, "err", err)
	}
	return nil, fmt.Errorf("tunnel to %s: no stream could be opened", key.addr)
}

// conn returns a tunnel connection to key that can take a new stream,
// dialing one when none can.
func (t *tunnels) conn(ctx context.Context, tp *tunnelPeer, key tunnelKey) (*http2.ClientConn, error) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	live := tp.conns[:0]
	var pick *http2.ClientConn
	for _, cc := range tp.conns {
		if cc.State().Closed {
			continue
		}
		live = append(live, cc)
		if pick == nil && cc.CanTakeNewRequest() {
			pick = cc
		}
	}
	clear(tp.conns[len(live):])
	tp.conns = live
	if pick != nil {
		return pick, nil
	}
	if time.Now().Before(tp.down) {
		return nil, fmt.Errorf("%w: %v", errNoTunnel, tp.lastFail)
	}
	conf := t.o.p.meshClientTLS(key.id, http2.NextProtoTLS)
	tc, err := t.o.dialMesh(ctx, key.addr, conf, key.id, http2.NextProtoTLS)
	if err != nil {
		tp.down, tp.lastFail = time.Now().Add(tunnelRetryAfter), err
		t.o.p.log.Info("tunnel unavailable: one mTLS connection per stream to this peer for a while", "tunnel", key.addr, "peer", key.id.String(), "err", err, "retryAfter", tunnelRetryAfter)
		return nil, fmt.Errorf("%w: %v", errNoTunnel, err)
	}
	cc, err := t.h2.NewClientConn(tc)
	if err != nil {
		tc.Close()
		return nil, fmt.Errorf("%w: %v", errNoTunnel, err)
	}
	tp.conns = append(tp.conns, cc)
	return cc, nil
}

// streamRefused is a peer's answer other than 200 to a CONNECT: the
// stream was refused (not a failure of the tunnel).
type streamRefused struct{ status int }

func (e *streamRefused) Error() string {
	return "the peer refused the stream: " + strconv.Itoa(e.status) + " " + http.StatusText(e.status)
}

// open sends CONNECT for ep on cc and returns the stream once the peer
// has accepted it. The stream lives until it is closed, whatever ctx does
// after open returns.
func (t *tunnels) open(ctx context.Context, cc *http2.ClientConn, ep *endpoint) (net.Conn, error) {
	sctx, cancel := context.WithCancel(context.Background())
	stop := context.AfterFunc(ctx, cancel) // until the peer answers
	pr, pw := io.Pipe()
	req := (&http.Request{
		Method:        http.MethodConnect,
		URL:           &url.URL{Host: ep.addr},
		Host:          ep.addr,
		Header:        http.Header{headerSourceWorkload: {t.o.self.Workload}},
		Body:          pr,
		ContentLength: -1,
	}).WithContext(sctx)
	resp, err := cc.RoundTrip(req)
	if !stop() {
		err = errors.Join(err, ctx.Err())
	}
	if err != nil {
		cancel()
		pw.Close()
		if resp != nil {
			resp.Body.Close()
		}
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		cancel()
		pw.Close()
		return nil, &streamRefused{status: resp.StatusCode}
	}
	return &tunnelClientConn{pw: pw, body: resp.Body, cancel: cancel}, nil
}

// tunnelClientConn is the client's end of one CONNECT stream as a
// net.Conn.
type tunnelClientConn struct {
	pw     *io.PipeWriter
	body   io.ReadCloser // the peer's bytes
	cancel context.CancelFunc
	once   sync.Once
}

func (c *tunnelClientConn) Read(b []byte) (int, error)  { return c.body.Read(b) }
func (c *tunnelClientConn) Write(b []byte) (int, error) { return c.pw.Write(b) }

// CloseWrite ends the stream's request side (END_STREAM): the peer's app
// sees the half-close.
func (c *tunnelClientConn) CloseWrite() error { return c.pw.Close() }

func (c *tunnelClientConn) Close() error {
	c.once.Do(func() {
		c.pw.CloseWithError(net.ErrClosed)
		c.body.Close()
		c.cancel()
	})
	return nil
}

func (c *tunnelClientConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *tunnelClientConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *tunnelClientConn) SetDeadline(time.Time) error      { return nil }
func (c *tunnelClientConn) SetReadDeadline(time.Time) error  { return nil }
func (c *tunnelClientConn) SetWriteDeadline(time.Time) error { return nil }

// closeAll closes every tunnel connection (shutdown).
func (t *tunnels) closeAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, tp := range t.peers {
		tp.mu.Lock()
		for _, cc := range tp.conns {
			cc.Close()
		}
		tp.conns = nil
		tp.mu.Unlock()
	}
}
