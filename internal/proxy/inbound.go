package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"golang.org/x/net/http2"

	"github.com/zmesh/zmesh/internal/authz"
	"github.com/zmesh/zmesh/internal/policy"
	"github.com/zmesh/zmesh/internal/proxy/http1"
	"github.com/zmesh/zmesh/internal/telemetry"
	"github.com/zmesh/zmesh/internal/tracing/otlp"
)

// inbound is the mesh-facing listener in front of the app.
type inbound struct {
	p       *Proxy
	tlsConf *tls.Config   // what handshakes use: baseTLS, or the state's serverTLS
	baseTLS *tls.Config   // the inbound's own settings, before meshMTLS
	conns   *connListener // detected connections, served by srv
	srv     *httpServer
	app     *http.Transport  // to the app: what h1 cannot do in one goroutine
	h1      *http1.Transport // to the app: HTTP/1.1, app as its fallback
	h2c     *http2.Transport // to the app, for gRPC
	rp      *httputil.ReverseProxy
	wg      sync.WaitGroup
	// streams are the connections being admitted and the TCP streams
	// (admit tracks each one until it hands it to srv or is done with it)
	// and the upgraded connections, which drain and shutdown close.
	streams streamSet

	self     telemetry.Peer
	services []string // FQDNs of the services this workload serves
}

func newInbound(p *Proxy) *inbound {
	app := newPlainTransport()
	in := &inbound{
		p:     p,
		conns: newConnListener(p.inLn.Addr()),
		app:   app,
		h1:    newAppTransport(p.cfg.AppAddr, app),
		h2c:   newH2CTransport(),
		self: telemetry.Peer{
			Workload:  p.cfg.Workload.Name,
			Namespace: p.cfg.Workload.Namespace,
			Principal: p.selfStr,
		},
	}
	for _, s := range p.cfg.Workload.Services {
		in.services = append(in.services, s+"."+p.cfg.Workload.Namespace+".svc."+p.cfg.DNSDomain)
	}

	// The certificate and the bundle are read from Certs at each
	// handshake, so rotation needs nothing here. Peers must belong to the
	// trust domain or an alias in the current view, and chain to the
	// mesh's roots either way (trustBundles); which peer may do what is
	// authorization's business, per request.
	in.tlsConf = tlsconfig.MTLSServerConfig(p.cfg.Certs, trustBundles{p}, tlsconfig.AdaptMatcher(in.trustedPeer))
	p.verifyAtProxyTime(in.tlsConf, tlsconfig.AdaptMatcher(in.trustedPeer))
	in.tlsConf.MinVersion = tls.VersionTLS13
	in.tlsConf.NextProtos = []string{http2.NextProtoTLS, "http/1.1", alpnTCP}
	in.baseTLS = in.tlsConf.Clone()
	// MeshConfig meshMTLS, as pushed: each handshake takes the settings
	// of the state in force.
	in.tlsConf.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		if st := p.state.Load(); st != nil && st.serverTLS != nil {
			return st.serverTLS, nil
		}
		return nil, nil
	}

	in.rp = newReverseProxy(in, p.log)
	in.srv = newHTTPServer(&http.Server{
		Handler:           in,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       serverIdleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ConnContext:       p.connContext,
		ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
		// HTTP/2 for connections that negotiated it with ALPN (the TLS
		// handshake is done before the server sees the connection, so
		// the server has no TLSConfig), and plaintext callers
		// (PERMISSIVE, DISABLE) may speak HTTP/1.x or cleartext HTTP/2
		// with prior knowledge, as a gRPC client without a proxy does.
		Protocols: inboundProtocols(),
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams: 1000,
			MaxReadFrameSize:     1 << 20,
		},
	}, p.inLn.Addr())
	return in
}

// inboundProtocols are what the inbound HTTP server speaks: HTTP/1.x and
// HTTP/2, over TLS (ALPN) or, for plaintext callers, with prior knowledge.
func inboundProtocols() *http.Protocols {
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetHTTP2(true)
	p.SetUnencryptedHTTP2(true)
	return &p
}

// trustedPeer authorizes a peer certificate's SPIFFE ID at the handshake.
func (in *inbound) trustedPeer(id spiffeid.ID) error {
	if st := in.p.state.Load(); st != nil && st.trusts(id.TrustDomain()) {
		return nil
	}
	if id.MemberOf(in.p.td) {
		return nil
	}
	return errors.New("peer is in neither the mesh's trust domain nor one of its aliases")
}

// run accepts connections on ln until ctx is done, detects each one's
// protocol and hands it to the HTTP server. It returns when every
// goroutine it started has ended.
func (in *inbound) run(ctx context.Context, ln net.Listener) error {
	var serveErr error
	in.wg.Go(func() {
		if err := in.srv.Serve(in.conns); err != nil && !errors.Is(err, http.ErrServerClosed) {
			serveErr = err
		}
	})
	err := acceptLoop(ctx, ln, in.p.log, "inbound", func(c net.Conn) {
		in.wg.Go(func() { in.admit(ctx, c) })
	})
	in.conns.Close()
	in.wg.Wait()
	if err == nil {
		err = serveErr
	}
	return err
}

// admit decides, from the connection's first bytes and the
// PeerAuthentication mode of the app's port, whether to serve it and how:
// a TLS ClientHello is answered with mutual TLS, an HTTP request goes to
// the HTTP server, anything else is plaintext TCP (see
// capture_inbound.go). A connection the mode does not admit is closed
// without reading further.
func (in *inbound) admit(ctx context.Context, c net.Conn) {
	log := in.p.log
	st := in.p.state.Load()
	if st == nil {
		log.Debug("inbound connection refused: no configuration yet", "peer", c.RemoteAddr().String())
		c.Close()
		return
	}
	tracked := in.streams.add(c)
	if tracked == nil {
		return // draining is over, or shutting down
	}
	defer tracked.end()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	handedOff := false
	defer func() {
		if !handedOff {
			stop()
			c.Close()
		}
	}()
	dst, ok := in.p.redirectedTo(c)
	if !ok {
		log.Warn("inbound connection refused: redirected to one of the proxy's own ports", "peer", c.RemoteAddr().String(), "dst", dst.String())
		return
	}
	_, appPort := in.p.appTarget(dst)
	// The first bytes: a TLS ClientHello, an HTTP request, other bytes,
	// or none within the detection time-out (the client of a
	// server-first protocol waits for the app to speak). Where plaintext
	// is refused anyway, there is nothing to time out for.
	wait := in.p.detect
	if !st.set.Connection(appPort, false).Allow {
		wait = handshakeTimeout
	}
	proto, _, early, err := detect(c, wait)
	if err != nil {
		return
	}
	silent := len(early) == 0
	for {
		c.SetDeadline(time.Now().Add(handshakeTimeout))
		pc := &replayConn{Conn: c, early: early, dst: dst}
		var conn net.Conn = pc
		isTLS := len(early) > 0 && early[0] == recordTypeHandshake
		if res := st.set.Connection(appPort, isTLS); !res.Allow {
			log.Info("inbound connection refused", "peer", c.RemoteAddr().String(), "tls", isTLS,
				"mode", res.PeerMode.String(), "peerAuthentication", res.Policy, "reason", res.Reason)
			return
		}
		if isTLS {
			tc := tls.Server(pc, in.tlsConf)
			err := tc.HandshakeContext(ctx)
			in.p.metrics.Handshake("server", err)
			if err != nil {
				log.Info("inbound TLS handshake failed", "peer", c.RemoteAddr().String(), "err", err)
				return
			}
			conn = tc
			if tc.ConnectionState().NegotiatedProtocol == alpnTCP && in.p.gw != nil {
				log.Info("inbound TCP stream refused: a gateway serves HTTP", "peer", c.RemoteAddr().String())
				return
			}
			if tc.ConnectionState().NegotiatedProtocol == alpnTCP {
				// A TCP stream from a client proxy: served here, with
				// the AfterFunc still closing it at shutdown.
				c.SetDeadline(time.Time{})
				handedOff = true
				defer stop()
				in.serveTCP(ctx, tc)
				return
			}
		}
		c.SetDeadline(time.Time{})
		if !isTLS && !proto.isHTTP() && in.p.gw != nil {
			log.Info("inbound plaintext TCP refused: a gateway serves HTTP", "peer", c.RemoteAddr().String())
			return
		}
		if !isTLS && !proto.isHTTP() {
			// Plaintext raw TCP (PERMISSIVE, DISABLE): relayed with no
			// identity, under Istio's TCP authorization semantics. A
			// silent client that speaks before the app turns out to be
			// something else after all: detected again from its bytes.
			redo := in.servePlainTCP(ctx, pc, silent)
			if redo == nil {
				return
			}
			early, silent = redo, false
			proto, _ = sniff(redo, true)
			continue
		}
		if !stop() {
			return // shutting down: the AfterFunc closed c
		}
		handedOff = true
		in.conns.push(conn)
		return
	}
}

// ServeHTTP authorizes one inbound request and forwards it to the app.
func (in *inbound) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if screenRequest(w, r) {
		return
	}
	start := time.Now()
	st := in.p.state.Load()
	pr := peerFrom(r.Context())
	if pr == nil {
		pr = &peer{appAddr: in.p.cfg.AppAddr, appPort: in.p.appPort}
	}
	// The mode was checked when the connection was admitted; a push may
	// have tightened it since. Abort the connection rather than serve a
	// kept-alive connection the current policy would refuse.
	if res := st.set.Connection(pr.appPort, pr.mtls); !res.Allow {
		in.p.log.Info("inbound connection closed: no longer allowed", "peer", pr.ip.String(),
			"mode", res.PeerMode.String(), "peerAuthentication", res.Policy, "reason", res.Reason)
		panic(http.ErrAbortHandler)
	}
	if in.p.gw != nil {
		// A gateway: the mesh's requests go where its Gateways' servers
		// and VirtualServices say, not to an app.
		gp, srv := st.gateway.meshServer(stripPort(r.Host))
		gpr := *pr
		in.p.serveGateway(w, r, st, gp, srv, &gpr)
		return
	}
	rec := newRecorder(w)
	defer rec.release()
	rec.grpc = protocolOf(r) == "grpc"
	rec.streams = &in.streams
	src := in.identify(r.Header, pr)
	span := in.p.startTrace(r.Header, otlp.Server, start)
	d := in.decide(r.Context(), st, r, pr)
	upstream, cb := in.respond(rec, r, &d, pr.appAddr)
	in.report(r, rec, &d, pr, src, start, upstream, requestSize(r, cb))
	in.endServerTrace(span, r, rec, pr.uri)
}

// identify sets the caller's identity headers on a request from pr and
// returns the caller as metrics name it. Only the server proxy speaks for
// the client certificate (X-Forwarded-Client-Cert is replaced, never
// passed on), and only an mTLS peer may name its workload.
func (in *inbound) identify(h http.Header, pr *peer) telemetry.Peer {
	src := telemetry.Peer{Namespace: pr.namespace, Principal: pr.uri}
	if pr.mtls {
		if v := h[headerSourceWorkload]; len(v) == 1 && len(v[0]) <= 253 {
			src.Workload = v[0]
		}
	}
	delete(h, headerSourceWorkload)
	delete(h, headerXFCC)
	if pr.mtls {
		h[headerXFCC] = []string{pr.xfcc}
	}
	return src
}

// respond answers r as verdict d says: with Envoy's reply for a request
// that is rejected or denied (policy names go to the access log only), or
// with the response of the app at app. It returns the upstream address and the
// request body's counter when the request was forwarded.
func (in *inbound) respond(rec *recorder, r *http.Request, d *verdict, app string) (upstream string, cb *countingBody) {
	if in.refuse(rec, r, d) {
		return "", nil
	}
	if d.path != "" {
		// Forward the normalized path that policies matched.
		r.URL.Path, r.URL.RawPath = d.decoded, d.path
	}
	d.applyAuthHeaders(r.Header)
	if d.custom != nil {
		rec.respond = d.custom.Respond
	}
	r.URL.Scheme = "http"
	r.URL.Host = app
	upstream = app
	cb = countBody(r)
	in.rp.ServeHTTP(rec, r)
	return upstream, cb
}

// refuse answers r with Envoy's reply when verdict d rejects or denies it
// (policy names go to the access log only), and reports whether it did.
// The inbound side and a gateway share it.
func (in *inbound) refuse(rec *recorder, r *http.Request, d *verdict) bool {
	res := &d.res
	switch {
	case d.badRequest:
		rec.fail(flagNone, d.err)
		writeText(rec, http.StatusBadRequest, "Bad Request")
	case !res.Allow && res.Stage == policy.StageRequestAuthentication:
		// A token that does not verify: Envoy's jwt_authn reply.
		rec.fail(flagNone, nil)
		rec.reason = res.Reason
		if res.Status == http.StatusUnauthorized {
			rec.Header().Set("Www-Authenticate", `Bearer realm="`+realm(r)+`", error="invalid_token"`)
		}
		writeText(rec, res.Status, res.Body)
	case !res.Allow && d.custom != nil && res.Authz.Action == authz.ActionCustom:
		// Denied by the CUSTOM provider (or because it could not be
		// asked): its reply, as Envoy's ext_authz filter sends it.
		rec.fail(flagExtAuthzDenied, d.custom.Err)
		rec.reason = res.Reason
		in.p.metrics.Denied(res.Policy)
		applyHeaders(rec.Header(), d.custom.Headers)
		if rec.Header().Get("Content-Type") == "" {
			rec.Header().Set("Content-Type", "text/plain")
		}
		rec.WriteHeader(d.custom.Status)
		io.WriteString(rec, d.custom.Body)
	case !res.Allow:
		rec.fail(flagUnauthorized, nil)
		rec.reason = res.Reason
		in.p.metrics.Denied(res.Policy)
		writeText(rec, http.StatusForbidden, bodyDenied)
	default:
		return false
	}
	return true
}

// report records a served request in the metrics (Istio's, reported by
// the destination) and the access log.
func (in *inbound) report(r *http.Request, rec *recorder, d *verdict, pr *peer, src telemetry.Peer, start time.Time, upstream string, reqBytes int64) {
	res := &d.res
	entry := telemetry.AccessEntry{Policy: res.Policy, Audit: res.Authz.Audit, AuditPolicy: res.Authz.AuditPolicy}
	if dr := res.Authz.DryRun; dr.Evaluated {
		entry.DryRunResult, entry.DryRunPolicy = "deny", dr.Policy
		if dr.Allow {
			entry.DryRunResult = "allow"
		}
		in.p.metrics.DryRun(dr.Policy, entry.DryRunResult)
	}

	elapsed := time.Since(start)
	security := telemetry.SecurityNone
	if pr.mtls {
		security = telemetry.SecurityMutualTLS
	}
	svc := in.serviceFor(r.Host)
	in.p.metrics.ObserveRequest(&telemetry.RequestObservation{
		Labels: telemetry.RequestLabels{
			Reporter:         telemetry.ReporterDestination,
			Source:           src,
			Destination:      in.self,
			Service:          svc,
			ServiceName:      serviceName(svc),
			ServiceNamespace: in.self.Namespace,
			Protocol:         protocolOf(r),
			Code:             rec.status(),
			Flags:            rec.flags,
			GRPCStatus:       grpcLabel(rec),
			Security:         security,
		},
		Duration:      elapsed,
		RequestBytes:  reqBytes,
		ResponseBytes: rec.bytes,
	})
	entry.Direction = "inbound"
	entry.Method = r.Method
	entry.Authority = r.Host
	entry.Path = r.RequestURI
	entry.Protocol = r.Proto
	entry.Code = rec.status()
	entry.Flags = rec.flags
	entry.Duration = elapsed
	entry.Peer = pr.uri
	entry.Upstream = upstream
	entry.Reason = rec.reason
	entry.BytesIn = reqBytes
	entry.BytesOut = rec.bytes
	in.p.access.Log(r.Context(), &entry)
}

// realm is the WWW-Authenticate realm of a 401, the request's URL without
// its query, as Envoy's jwt_authn writes it. Characters that would end
// the quoted string are dropped.
func realm(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	path, _, _ := strings.Cut(r.RequestURI, "?")
	return strings.Map(func(c rune) rune {
		if c == '"' || c == '\\' || c < 0x20 || c == 0x7f {
			return -1
		}
		return c
	}, scheme+"://"+r.Host+path)
}

// RoundTrip sends a request to the app: gRPC that arrived over HTTP/2
// as cleartext HTTP/2 (gRPC needs it: trailers, streams), other gRPC
// over the pooled HTTP/1.1 transport, everything else over h1, which
// does the exchange in the handler's goroutine (no hand-offs to a
// connection's read and write loops) and passes what it cannot do that
// way to the same pooled transport.
func (in *inbound) RoundTrip(r *http.Request) (*http.Response, error) {
	if protocolOf(r) == "grpc" {
		if r.ProtoMajor == 2 {
			return in.h2c.RoundTrip(r)
		}
		return in.app.RoundTrip(r)
	}
	if r.URL.Host != in.p.cfg.AppAddr {
		// Captured, for another port of the app than the one h1 serves.
		return in.app.RoundTrip(r)
	}
	return in.h1.RoundTrip(r)
}

// serviceFor names the destination_service of a request to this workload:
// the one of the workload's services that host names (FQDN or short form),
// else its first service, else the host itself.
func (in *inbound) serviceFor(host string) string {
	h := canonicalHost(stripPort(host))
	for _, fq := range in.services {
		if fq == h || (len(fq) > len(h) && strings.HasPrefix(fq, h) && fq[len(h)] == '.') {
			return fq
		}
	}
	if len(in.services) > 0 {
		return in.services[0]
	}
	return h
}

// serviceName returns the first DNS label of a service hostname.
func serviceName(fqdn string) string {
	if i := strings.IndexByte(fqdn, '.'); i > 0 {
		return fqdn[:i]
	}
	return fqdn
}

// protocolOf returns Istio's request_protocol: grpc or http.
func protocolOf(r *http.Request) string {
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
		return "grpc"
	}
	return "http"
}

func (in *inbound) closeIdle() {
	in.h1.CloseIdleConnections() // and its fallback's, app's
	in.h2c.CloseIdleConnections()
}
