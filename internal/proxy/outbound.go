package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/net/http2"

	"github.com/zmesh/zmesh/internal/proxy/http1"
	"github.com/zmesh/zmesh/internal/registry"
	"github.com/zmesh/zmesh/internal/telemetry"
	"github.com/zmesh/zmesh/internal/tracing/otlp"
)

// outbound is the app's HTTP proxy: it routes each request to a mesh
// service over mTLS, to a plaintext endpoint, or, for hosts the mesh does
// not know, straight to where the app asked (passthrough).
type outbound struct {
	p     *Proxy
	srv   *httpServer
	rp    *httputil.ReverseProxy
	plain *http.Transport
	h2c   *http2.Transport // plaintext HTTP/2 upstreams: an app's HTTP/2 (gRPC) to a host without a proxy
	self  telemetry.Peer
	// selfAddrs are the addresses of this listener: a passthrough request
	// to one of them would loop.
	selfAddrs []string

	// streams are the CONNECT tunnels, captured connections and
	// upgraded connections, which drain and shutdown close.
	streams streamSet
	// tunnels are the HBONE connections to peers (hbone.go).
	tunnels *tunnels

	mu sync.Mutex
	// byID holds the mesh transport of every identity seen, kept when a
	// push drops the identity (its idle connections are closed) so that
	// an identity that comes back (a workload reconnecting to the control
	// plane) reuses it, and so that shutdown reaches every connection.
	byID map[spiffeid.ID]*meshTarget
	// origins are the TLS originators in use, by key (see attach).
	origins map[string]*originator

	// VirtualService routes: their reverse proxy (failures go to the
	// retry loop), their mirrored copies, and the random numbers of their
	// decisions (nil: math/rand; tests set a seeded source).
	vrp     *httputil.ReverseProxy
	mirrors *mirrors
	rnd     func() uint64
}

// meshTarget is the client side of the mesh connections to one identity:
// transports whose pools hold only connections on which the server proved
// that identity. HTTP/1.1 requests from the app stay HTTP/1.1 on the mesh
// hop, as with Istio's default h2UpgradePolicy (DO_NOT_UPGRADE), through
// an http1.Transport per endpoint, which does the exchange in the
// handler's goroutine; the server proxy's HTTP/1.1 server, in turn, runs
// the request in its connection's goroutine. What that fast path does not
// take (gRPC, bodies that are large or streamed, Expect) goes over one
// multiplexed HTTP/2 transport (t). Protocol upgrades (WebSocket) take
// HTTP/1.1 whatever the policy: HTTP/2 cannot carry them.
type meshTarget struct {
	id     spiffeid.ID
	t      *http2.Transport
	conf   *tls.Config // for HTTP/1.1 connections (ALPN http/1.1)
	h2conf *tls.Config // for HTTP/2 connections (ALPN h2)

	mu sync.RWMutex               // read per request, written when an endpoint is first used or dropped
	h1 map[h1Key]*http1.Transport // by endpoint address and requests per connection
	// perConn are the HTTP/2 pools of the maxRequestsPerConnection bounds
	// in use, by bound (see perConnH2).
	perConn map[int]*perConnH2
}

// h1Key names an HTTP/1.1 pool of a mesh target: one per endpoint and
// maxRequestsPerConnection (0: unlimited), since a connection counts its
// requests against one bound, as Envoy's pools are per cluster.
type h1Key struct {
	addr    string
	perConn int
}

func newOutbound(p *Proxy) *outbound {
	o := &outbound{
		p:       p,
		plain:   newPlainTransport(),
		h2c:     newH2CTransport(),
		byID:    map[spiffeid.ID]*meshTarget{},
		origins: map[string]*originator{},
		self: telemetry.Peer{
			Workload:  p.cfg.Workload.Name,
			Namespace: p.cfg.Workload.Namespace,
			Principal: p.selfStr,
		},
	}
	o.tunnels = newTunnels(o)
	addr := p.outLn.Addr().String()
	o.selfAddrs = []string{addr}
	if _, port, err := net.SplitHostPort(addr); err == nil {
		o.selfAddrs = append(o.selfAddrs, "localhost:"+port, "127.0.0.1:"+port)
	}
	o.rp = newReverseProxy(o, p.log)
	o.vrp, o.mirrors = newVirtualReverseProxy(o), newMirrors()
	o.srv = newHTTPServer(&http.Server{
		Handler:           o,
		ConnContext:       o.connContext, // captured connections' original destination
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       serverIdleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
		// Apps speak HTTP/1.1, or HTTP/2 with prior knowledge: gRPC
		// clients do, as captured traffic arrives. HTTP/2 requests go on
		// as HTTP/2 (the mesh's multiplexed connection), and the server
		// proxy hands gRPC to its app as HTTP/2 too.
		Protocols: outboundProtocols(),
	}, p.outLn.Addr())
	return o
}

// outboundProtocols are what the outbound listener speaks with apps:
// HTTP/1.x and cleartext HTTP/2 (prior knowledge).
func outboundProtocols() *http.Protocols {
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	return &p
}

// newMeshTarget builds the transport for servers that must prove id.
func (o *outbound) newMeshTarget(id spiffeid.ID) *meshTarget {
	conf := o.p.meshClientTLS(id, http2.NextProtoTLS)
	m := &meshTarget{id: id, h1: map[h1Key]*http1.Transport{}, perConn: map[int]*perConnH2{}}
	m.conf, m.h2conf = conf.Clone(), conf
	m.conf.NextProtos = []string{"http/1.1"}
	m.t = &http2.Transport{
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			return o.dialMesh(ctx, addr, conf, id, http2.NextProtoTLS)
		},
		DisableCompression: true,
		IdleConnTimeout:    clientIdleTimeout,
		ReadIdleTimeout:    30 * time.Second,
		PingTimeout:        10 * time.Second,
		MaxHeaderListSize:  maxHeaderBytes,
	}
	return m
}

// transportFor returns the transport for r to the endpoint addr: HTTP/2
// when the request is, or the mesh says to upgrade (h2UpgradePolicy);
// HTTP/1.1 for a protocol upgrade (WebSocket) whatever the policy, since
// it cannot ride HTTP/2. Under a maxRequestsPerConnection (perConnLimit)
// the HTTP/1.1 and HTTP/2 pools count each connection's requests
// (streams): see perConnH2.
func (o *outbound) transportFor(m *meshTarget, r *http.Request, addr string, h2Upgrade bool) http.RoundTripper {
	perConn := perConnLimit(r.Context())
	h2 := o.h2For(m, perConn)
	if !http1.IsUpgrade(r) && (h2Upgrade || r.ProtoMajor != 1 || protocolOf(r) == "grpc") {
		return h2
	}
	k := h1Key{addr, perConn}
	m.mu.RLock()
	t, ok := m.h1[k]
	m.mu.RUnlock()
	if ok {
		return t
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok = m.h1[k]
	if !ok {
		var err error
		t, err = http1.New(http1.Config{
			Addr:   addr,
			Scheme: "https",
			Dial: func(ctx context.Context) (net.Conn, error) {
				return o.dialMesh(ctx, addr, m.conf, m.id, "http/1.1")
			},
			Fallback:               h2,
			MaxConns:               maxMeshConnsPerEndpoint,
			MaxIdleConns:           maxMeshConnsPerEndpoint,
			IdleTimeout:            clientIdleTimeout,
			MaxResponseHeaderBytes: maxHeaderBytes,
			MaxRequestsPerConn:     perConn,
		})
		if err != nil {
			return h2 // cannot happen: the config above is valid
		}
		m.h1[k] = t
	}
	return t
}

// h2For returns m's HTTP/2 transport for a maxRequestsPerConnection of
// perConn: the shared one when 0, else the pool that counts streams.
func (o *outbound) h2For(m *meshTarget, perConn int) http.RoundTripper {
	if perConn <= 0 {
		return m.t
	}
	m.mu.RLock()
	p := m.perConn[perConn]
	m.mu.RUnlock()
	if p != nil {
		return p
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if p = m.perConn[perConn]; p == nil {
		p = newPerConnH2(m.t, func(ctx context.Context, addr string) (net.Conn, error) {
			return o.dialMesh(ctx, addr, m.h2conf, m.id, http2.NextProtoTLS)
		}, perConn)
		m.perConn[perConn] = p
	}
	return p
}

// closeEach sends each request on a connection of its own, closed after
// it (Connection: close): how a transport that cannot count a
// connection's requests still honours any maxRequestsPerConnection,
// more strictly than asked (as if it were 1) rather than not at all.
type closeEach struct{ rt http.RoundTripper }

func (c closeEach) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.WithContext(r.Context()) // a shallow copy: the caller's request is not ours to change
	r.Close = true
	return c.rt.RoundTrip(r)
}

func (c closeEach) CloseIdleConnections() {
	if ci, ok := c.rt.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// maxMeshConnsPerEndpoint bounds the HTTP/1.1 connections to one server
// proxy. Past it, a burst of concurrent requests shares the multiplexed
// HTTP/2 connection rather than paying a mutual TLS handshake each.
const maxMeshConnsPerEndpoint = 64

// forget drops the HTTP/1.1 transports of endpoints not in keep, closing
// their idle connections; requests in flight on them finish normally.
func (m *meshTarget) forget(keep map[string]bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, t := range m.h1 {
		if !keep[k.addr] {
			delete(m.h1, k)
			t.CloseIdleConnections()
		}
	}
	for _, p := range m.perConn {
		p.forget(keep)
	}
}

// closeIdle closes the target's idle connections, of both protocols.
func (m *meshTarget) closeIdle() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, t := range m.h1 {
		t.CloseIdleConnections()
	}
	for _, p := range m.perConn {
		p.CloseIdleConnections()
	}
	m.t.CloseIdleConnections()
}

// dialMesh opens one mTLS connection to a server proxy and checks, in the
// handshake, that it holds id or an alias of it (secure naming, see
// authorizeServer), and that it agreed to speak proto (ALPN). The certificate presented
// and the bundle used are read from Certs now, so a rotated certificate
// is used from the next connection on.
//
// The HTTP/2 pool shares one dial among all requests waiting for a
// connection and gives it the first request's context; the dial ignores
// that context's cancellation (keeping its deadline budget), so that one
// impatient caller does not fail the others.
func (o *outbound) dialMesh(ctx context.Context, addr string, conf *tls.Config, id spiffeid.ID, proto string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dialTimeout+handshakeTimeout)
	defer cancel()
	raw, err := dial(ctx, dialerFor(ctx), addr)
	if err != nil {
		return nil, &dialError{fmt.Errorf("connect to %s: %w", addr, err)}
	}
	if st := o.p.state.Load(); st != nil {
		conf = st.tls.Apply(conf) // MeshConfig meshMTLS
	}
	tc := tls.Client(raw, conf)
	err = tc.HandshakeContext(ctx)
	o.p.metrics.Handshake("client", err)
	if err != nil {
		raw.Close()
		return nil, &dialError{fmt.Errorf("mTLS handshake with %s (expecting %s): %w", addr, id, err)}
	}
	if np := tc.ConnectionState().NegotiatedProtocol; np != proto {
		tc.Close()
		return nil, &dialError{fmt.Errorf("mTLS handshake with %s: negotiated %q, want %q", addr, np, proto)}
	}
	return tc, nil
}

// dialError is a failure to establish a mesh connection: nothing of the
// request has been sent, so it may be retried.
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// Retries of requests whose mesh connection could not be established, as
// Istio's default retry policy does for connect failures.
const (
	connectRetries = 2
	retryBackoff   = 25 * time.Millisecond
)

// originKey is the context key of the originator a request's
// DestinationRule asks for.
type originKey struct{}

// attach gives st's mesh endpoints their transports, reusing the one of
// each identity already seen, and its TLS originators the transport of
// the same settings already in use, so that pooled connections survive
// pushes.
func (o *outbound) attach(st *state) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for key, g := range st.routes.origins {
		g.o = o
		if have, ok := o.origins[key]; ok {
			g.t = have.t
		} else {
			o.origins[key] = g
		}
	}
	for addr, m := range st.routes.targets {
		t, ok := o.byID[m.id]
		if !ok {
			t = o.newMeshTarget(m.id)
			o.byID[m.id] = t
		}
		st.routes.targets[addr] = t
	}
}

// prune closes the idle connections of transports that old used and st
// does not: HTTP/2 per identity, HTTP/1.1 per endpoint. Requests in flight
// on them finish normally.
func (o *outbound) prune(st, old *state) {
	if old == nil {
		return
	}
	o.mu.Lock()
	for key, g := range o.origins {
		if _, kept := st.routes.origins[key]; !kept {
			delete(o.origins, key)
			g.closeIdle()
		}
	}
	o.mu.Unlock()
	keep := map[*meshTarget]map[string]bool{}
	for addr, m := range st.routes.targets {
		if keep[m] == nil {
			keep[m] = map[string]bool{}
		}
		keep[m][addr] = true
	}
	for _, m := range old.routes.targets {
		addrs, kept := keep[m]
		m.forget(addrs) // nil: every endpoint
		if !kept {
			m.t.CloseIdleConnections()
		}
	}
}

// ServeHTTP routes one request from the app.
func (o *outbound) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if screenRequest(w, r) {
		return
	}
	if r.Method == http.MethodConnect {
		o.tunnel(w, r)
		return
	}
	start := time.Now()
	rec := newRecorder(w)
	defer rec.release()
	rec.grpc = protocolOf(r) == "grpc"
	rec.streams = &o.streams
	labels := telemetry.RequestLabels{
		Reporter: telemetry.ReporterSource,
		Source:   o.self,
		Protocol: protocolOf(r),
		Security: telemetry.SecurityNone,
	}
	// Only this proxy may name the source workload.
	delete(r.Header, headerSourceWorkload)
	span := o.p.startTrace(r.Header, otlp.Client, start)
	upstream, peerID, cb := o.route(rec, r, &labels)
	o.report(r, rec, &labels, start, upstream, peerID, requestSize(r, cb))
	o.endClientTrace(span, r, rec, labels.Service, peerID)
}

// route sends r where its host says: to an endpoint of a mesh service
// (over mTLS when the endpoint has a proxy), through to the host itself
// when the mesh allows any host, or nowhere (502) under REGISTRY_ONLY. It
// fills the destination labels and returns the upstream address, the
// identity expected there and the request body's counter.
//
// REGISTRY_ONLY binds only the traffic that comes to this listener. Until
// the app's traffic is captured (iptables), an app reaches the proxy
// because it was told to use it as its HTTP proxy, and any app can ignore
// that: a client that skips the proxy (Go's, for instance, for loopback
// targets and hosts in NO_PROXY; a raw socket; a client that reads no
// proxy setting) reaches any host it likes. It is an egress policy for
// well-behaved apps, not a containment of hostile ones.
func (o *outbound) route(rec *recorder, r *http.Request, labels *telemetry.RequestLabels) (upstream, peerID string, cb *countingBody) {
	var routes *routeTable
	registryOnly := false
	st := o.p.state.Load()
	if st != nil {
		routes, registryOnly = st.routes, st.registryOnly
	}
	rt := routes.lookup(r.Host)
	dst, captured := capturedDst(r.Context())
	port := requestPort(r.Host, dst, captured)
	if rt == nil && captured {
		// Captured, and the Host names no service: where the app
		// connected to decides (a service's virtual address).
		var sp *registry.Port
		if rt, sp = routes.byDst(dst); sp != nil {
			port = sp.Number
		}
	}
	if vs := st.virtualServiceFor(rt, r.Host, o.self.Namespace); vs != nil && vs.HTTP {
		return o.virtual(rec, r, labels, st, vs, port)
	}
	if rt != nil {
		labels.Service, labels.ServiceName, labels.ServiceNamespace = rt.hostname, rt.name, rt.namespace
		ep, pool, setCookie := rt.pickFor("", port, r)
		if ep == nil {
			rec.fail(flagNoHealthyUp, nil)
			rec.reason = "service " + rt.hostname + " has no endpoints"
			writeText(rec, http.StatusServiceUnavailable, bodyNoUpstream)
			return "", "", nil
		}
		if ep.refuse != "" {
			rec.fail(flagNoHealthyUp, nil)
			rec.reason = ep.refuse
			writeText(rec, http.StatusServiceUnavailable, bodyNoUpstream)
			return "", "", nil
		}
		if !pool.acquire(r.Context()) {
			rec.fail(flagOverflow, nil)
			rec.reason = "connection pool of " + rt.hostname + " is full (DestinationRule connectionPool)"
			writeText(rec, http.StatusServiceUnavailable, bodyOverflow)
			return "", "", nil
		}
		if setCookie != "" {
			rec.Header().Add("Set-Cookie", setCookie)
		}
		r, upstream, peerID = o.toEndpoint(r.WithContext(pool.forRequest(r.Context())), ep, labels)
		cb = countBody(r)
		o.forward(rec, r, ep, pool)
		if labels.Security == telemetry.SecurityMutualTLS && rec.flags == flagUpstreamFailure {
			// The request may never have reached a server that proved
			// the expected identity (a refused handshake, secure naming):
			// the metric must not claim mutual TLS with that principal.
			labels.Security, labels.Destination.Principal = telemetry.Unknown, ""
		}
		return upstream, peerID, cb
	}
	if registryOnly {
		// Not a mesh service, and the mesh allows only those: Istio's
		// BlackHoleCluster answers 502.
		labels.Service, labels.ServiceName = stripPort(r.Host), blackHoleCluster
		rec.fail(flagNoRoute, nil)
		rec.reason = "outboundTrafficPolicy is REGISTRY_ONLY and " + stripPort(r.Host) + " is not a mesh service"
		writeText(rec, http.StatusBadGateway, bodyNotInRegistry)
		return "", "", nil
	}
	// Not a mesh service: Istio's ALLOW_ANY passthrough, to where the
	// app connected when it was captured.
	target := withDefaultPort(r.Host, "80")
	if captured {
		target = dst.String()
	}
	labels.Service, labels.ServiceName = stripPort(r.Host), "PassthroughCluster"
	if o.isSelf(target) || captured && o.isSelfDst(dst) {
		rec.fail(flagLoop, nil)
		rec.reason = "request addressed to the outbound listener itself"
		writeText(rec, http.StatusLoopDetected, "loop detected")
		return "", "", nil
	}
	r.URL.Scheme = "http"
	r.URL.Host = target
	cb = countBody(r)
	o.rp.ServeHTTP(rec, r)
	return target, "", cb
}

// forward sends r to ep, holding the connection pool slot taken for it
// and counting it in flight (LEAST_REQUEST) until the exchange ends, even
// when the reverse proxy aborts it (a panic with http.ErrAbortHandler);
// the outcome goes to outlier detection.
func (o *outbound) forward(rec *recorder, r *http.Request, ep *endpoint, pool *connPool) {
	ep.active.Add(1)
	defer func() {
		ep.active.Add(-1)
		pool.release()
	}()
	o.rp.ServeHTTP(rec, r)
	switch rec.flags {
	case flagUpstreamFailure:
		ep.health.report(http.StatusServiceUnavailable)
	case flagDownstreamReset:
	default:
		ep.health.report(rec.status())
	}
}

// report records a routed request in the metrics (Istio's, reported by
// the source), logs a failure, and writes the access log.
func (o *outbound) report(r *http.Request, rec *recorder, labels *telemetry.RequestLabels, start time.Time, upstream, peerID string, reqBytes int64) {
	elapsed := time.Since(start)
	labels.Code = rec.status()
	labels.Flags = rec.flags
	labels.GRPCStatus = grpcLabel(rec)
	o.p.metrics.ObserveRequest(&telemetry.RequestObservation{
		Labels:        *labels,
		Duration:      elapsed,
		RequestBytes:  reqBytes,
		ResponseBytes: rec.bytes,
	})
	if rec.flags != "" && rec.flags != flagNone {
		o.p.log.Warn("outbound request failed", "host", r.Host, "upstream", upstream, "flags", rec.flags, "reason", rec.reason)
	}
	o.p.access.Log(r.Context(), &telemetry.AccessEntry{
		Direction: "outbound",
		Method:    r.Method,
		Authority: r.Host,
		Path:      r.URL.RequestURI(),
		Protocol:  r.Proto,
		Code:      rec.status(),
		Flags:     rec.flags,
		Duration:  elapsed,
		Peer:      peerID,
		Upstream:  upstream,
		Reason:    rec.reason,
		BytesIn:   reqBytes,
		BytesOut:  rec.bytes,
	})
}

// RoundTrip sends a routed request: over the mesh transport of the
// endpoint's expected identity for https, plaintext otherwise. The
// identity is looked up in the current configuration at this moment, so a
// connection is never made against a stale expectation.
func (o *outbound) RoundTrip(r *http.Request) (*http.Response, error) {
	if g, ok := r.Context().Value(originKey{}).(*originator); ok {
		return limited(g.t, r).RoundTrip(r)
	}
	if r.URL.Scheme != "https" {
		if r.ProtoMajor == 2 {
			// The app spoke HTTP/2 (gRPC): so does the upstream, which
			// then serves cleartext HTTP/2 as the app expected.
			return limited(o.h2c, r).RoundTrip(r)
		}
		return limited(o.plain, r).RoundTrip(r)
	}
	var m *meshTarget
	upgrade := false
	if st := o.p.state.Load(); st != nil {
		m, upgrade = st.routes.targets[r.URL.Host], st.h2Upgrade
	}
	if m == nil {
		return nil, fmt.Errorf("endpoint %s is no longer in the configuration", r.URL.Host)
	}
	rt := o.transportFor(m, r, r.URL.Host, upgrade)
	for attempt := 0; ; attempt++ {
		resp, err := rt.RoundTrip(r)
		var de *dialError
		if err == nil || attempt == connectRetries || !errors.As(err, &de) || (r.Body != nil && r.Body != http.NoBody) {
			return resp, err
		}
		o.p.log.Warn("mesh connection failed; retrying", "upstream", r.URL.Host, "identity", m.id.String(), "attempt", attempt+1, "err", err)
		select {
		case <-time.After(retryBackoff << attempt):
		case <-r.Context().Done():
			return nil, err
		}
	}
}

// limited returns rt, or closeEach around it when r's destination sets a
// maxRequestsPerConnection: the transports to endpoints without a proxy
// (plaintext, TLS origination) do not count a connection's requests.
func limited(rt http.RoundTripper, r *http.Request) http.RoundTripper {
	if perConnLimit(r.Context()) > 0 {
		return closeEach{rt}
	}
	return rt
}

func (o *outbound) isSelf(hostport string) bool {
	for _, a := range o.selfAddrs {
		if strings.EqualFold(a, hostport) {
			return true
		}
	}
	return false
}

// withDefaultPort returns hostport with port added when it has none.
func withDefaultPort(hostport, port string) string {
	if _, _, err := net.SplitHostPort(hostport); err == nil {
		return hostport
	}
	return net.JoinHostPort(strings.Trim(hostport, "[]"), port)
}

func (o *outbound) closeIdle() {
	o.plain.CloseIdleConnections()
	o.h2c.CloseIdleConnections()
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, m := range o.byID {
		m.closeIdle()
	}
	for _, g := range o.origins {
		g.closeIdle()
	}
}
