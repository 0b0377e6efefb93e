package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"golang.org/x/net/http2"
	"google.golang.org/grpc/codes"

	"github.com/zmesh/zmesh/internal/proxy/http1"
	"github.com/zmesh/zmesh/internal/rawtcp"
)

// Headers the proxies set and strip.
const (
	// headerXFCC is X-Forwarded-Client-Cert: inbound removes whatever the
	// caller sent and, for mTLS callers, sets its own.
	headerXFCC = "X-Forwarded-Client-Cert"
	// headerSourceWorkload carries the calling workload's name from the
	// client proxy to the server proxy, for the source_workload metric
	// label. The server trusts it only over mTLS and only as a label: its
	// namespace and principal come from the verified certificate.
	headerSourceWorkload = "X-Zmesh-Source-Workload"
)

// Response bodies, as Envoy words them, so clients and scripts written for
// Istio recognise them.
const (
	bodyDenied         = "RBAC: access denied"
	bodyNoUpstream     = "no healthy upstream"
	bodyUpstreamFailed = "upstream connect error or disconnect/reset before headers"
	// bodyNotInRegistry is Istio's REGISTRY_ONLY answer: a 502 with no
	// body, from the block-all route.
	bodyNotInRegistry = ""
	// blackHoleCluster is the destination_service_name of such requests.
	blackHoleCluster = "BlackHoleCluster"
)

// Envoy-style response flags for the access log and the response_flags
// label.
const (
	flagNone            = "-"
	flagNoHealthyUp     = "UH"
	flagUpstreamFailure = "UF"
	flagUnauthorized    = "RBAC"
	flagExtAuthzDenied  = "UAEX"
	flagDownstreamReset = "DC"
	flagLoop            = "LD"
	flagNoRoute         = "NR"
)

// newDialer returns the dialer for plaintext upstreams.
func newDialer() *net.Dialer {
	return &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}
}

// dial connects to a TCP address with d. Every upstream connection of the
// data path is made here: it reads and writes with raw system calls
// (rawtcp), as the listeners' connections do.
func dial(ctx context.Context, d *net.Dialer, addr string) (net.Conn, error) {
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return rawtcp.Wrap(c), nil
}

// newPlainTransport returns a pooled keep-alive HTTP/1.1 transport. It
// never consults proxy environment variables: the proxy is the proxy.
func newPlainTransport() *http.Transport {
	return &http.Transport{
		Proxy:                  nil,
		DialContext:            dialContext,
		MaxIdleConns:           0,
		MaxIdleConnsPerHost:    maxIdleConnsPerApp,
		IdleConnTimeout:        appIdleTimeout,
		DisableCompression:     true,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: maxHeaderBytes,
	}
}

// appIdleTimeout is how long a connection to the app may stay idle in a
// pool.
const appIdleTimeout = 90 * time.Second

// newAppTransport returns the HTTP/1.1 transport to the app at addr that
// does each exchange in its caller's goroutine, with fallback for the
// requests it leaves (upgrades, large or streamed bodies, Expect:
// 100-continue). addr is the validated Config.AppAddr.
func newAppTransport(addr string, fallback *http.Transport) *http1.Transport {
	t, err := http1.New(http1.Config{
		Addr:                   addr,
		Fallback:               fallback,
		DialTimeout:            dialTimeout,
		MaxIdleConns:           maxIdleConnsPerApp,
		IdleTimeout:            appIdleTimeout,
		MaxResponseHeaderBytes: maxHeaderBytes,
	})
	if err != nil {
		panic("proxy: app transport: " + err.Error()) // only fails on an empty address, which Validate refuses
	}
	return t
}

// newH2CTransport returns a cleartext HTTP/2 transport (prior
// knowledge), for gRPC to the app.
func newH2CTransport() *http2.Transport {
	return &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			return dialContext(ctx, network, addr)
		},
		DisableCompression: true,
		IdleConnTimeout:    clientIdleTimeout,
		MaxHeaderListSize:  maxHeaderBytes,
	}
}

// copyBufferSize is the size of ReverseProxy's body copy buffers.
const copyBufferSize = 32 << 10

// bufferPool lends ReverseProxy its copy buffers. It pools array pointers
// so that neither Get nor Put allocates.
type bufferPool struct{ p sync.Pool }

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { return new([copyBufferSize]byte) }}}
}

func (b *bufferPool) Get() []byte { return b.p.Get().(*[copyBufferSize]byte)[:] }

func (b *bufferPool) Put(s []byte) {
	if cap(s) >= copyBufferSize {
		b.p.Put((*[copyBufferSize]byte)(s[:copyBufferSize]))
	}
}

// newReverseProxy returns a ReverseProxy that sends requests as the
// handler addressed them (the handler sets URL.Scheme and URL.Host) and
// reports failures to the recorder.
func newReverseProxy(rt http.RoundTripper, log *slog.Logger) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		// Rewrite (rather than Director) makes ReverseProxy drop the
		// caller's Forwarded and X-Forwarded-* headers.
		Rewrite:    func(*httputil.ProxyRequest) {},
		Transport:  rt,
		BufferPool: newBufferPool(),
		ErrorLog:   slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			rec, _ := w.(*recorder)
			if r.Context().Err() != nil {
				// The downstream went away; nothing to answer.
				if rec != nil {
					rec.fail(flagDownstreamReset, err)
				}
				w.WriteHeader(499)
				return
			}
			if rec != nil {
				rec.fail(flagUpstreamFailure, err)
			}
			writeText(w, http.StatusServiceUnavailable, bodyUpstreamFailed)
		},
	}
}

// hopHeaders are the hop-by-hop headers of RFC 9110 7.6.1 and those
// ReverseProxy treats as such: it removes them itself (and reads
// Connection and Upgrade first, to relay an upgrade); a copy the proxy
// sends itself (a mirror) must not carry them on either.
var hopHeaders = map[string]bool{
	"Connection": true, "Proxy-Connection": true, "Keep-Alive": true,
	"Proxy-Authenticate": true, "Proxy-Authorization": true, "Te": true,
	"Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
}

// dropNominatedHeaders removes the headers that h's Connection names
// (RFC 9110 7.6.1: they are for this hop only), other than hopHeaders,
// and leaves Connection naming only those. It runs as a request arrives:
// ReverseProxy removes the headers Connection names only when it
// forwards, after the proxy has added its own, so a caller could name
// X-Forwarded-Client-Cert, a JWT claim header or one that an ext_authz
// check added, and have the proxy's copy removed on the way to the app.
func dropNominatedHeaders(h http.Header) {
	vs, ok := h["Connection"]
	if !ok {
		return
	}
	var keep []string
	for _, v := range vs {
		for tok := range strings.SplitSeq(v, ",") {
			name := http.CanonicalHeaderKey(strings.TrimSpace(tok))
			switch {
			case name == "":
			case hopHeaders[name]:
				keep = append(keep, name)
			default:
				delete(h, name)
			}
		}
	}
	if len(keep) == 0 {
		delete(h, "Connection")
		return
	}
	h["Connection"] = []string{strings.Join(keep, ", ")}
}

// writeText answers with a short plain-text body, or, to a gRPC request,
// with the gRPC equivalent (see writeGRPCStatus).
func writeText(w http.ResponseWriter, code int, body string) {
	if rec, ok := w.(*recorder); ok && rec.grpc {
		writeGRPCStatus(w, code, body)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/plain")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	io.WriteString(w, body)
}

// writeGRPCStatus answers a gRPC request as Envoy answers one it refuses
// or cannot route itself: a trailers-only response, HTTP 200 (the gRPC
// protocol's status for every response), with grpc-status mapped from
// code as Envoy maps it and the text in grpc-message. gRPC clients then
// report PERMISSION_DENIED, UNAUTHENTICATED, UNAVAILABLE... rather than a
// protocol error, and metrics show response_code 200 with
// grpc_response_status, as Istio's do.
func writeGRPCStatus(w http.ResponseWriter, code int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "application/grpc")
	h.Set("Grpc-Status", strconv.Itoa(int(grpcStatusFor(code))))
	if msg != "" {
		h.Set("Grpc-Message", grpcMessageEscape(msg))
	}
	w.WriteHeader(http.StatusOK)
}

// grpcStatusFor maps an HTTP status to a gRPC status code as Envoy's
// httpToGrpcStatus does.
func grpcStatusFor(code int) codes.Code {
	switch code {
	case http.StatusBadRequest:
		return codes.Internal
	case http.StatusUnauthorized:
		return codes.Unauthenticated
	case http.StatusForbidden:
		return codes.PermissionDenied
	case http.StatusNotFound:
		return codes.Unimplemented
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return codes.Unavailable
	}
	return codes.Unknown
}

// grpcMessageEscape percent-encodes msg for grpc-message, as the gRPC
// protocol asks: bytes outside printable ASCII, and '%'.
func grpcMessageEscape(msg string) string {
	var b strings.Builder
	for i := 0; i < len(msg); i++ {
		c := msg[i]
		if c < 0x20 || c > 0x7e || c == '%' {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// grpcLabel is the grpc_response_status label of a request: for gRPC, the
// grpc-status of the response written to rec, a trailer (as ReverseProxy
// passes it on, declared or not) or, in a trailers-only response, a
// header; "" otherwise, as Istio reports it.
func grpcLabel(rec *recorder) string {
	if !rec.grpc {
		return ""
	}
	h := rec.Header()
	if v := h.Get("Grpc-Status"); v != "" {
		return v
	}
	return h.Get(http.TrailerPrefix + "Grpc-Status")
}

// recorder wraps a ResponseWriter to learn the status code and size of the
// response for metrics and the access log.
type recorder struct {
	http.ResponseWriter
	code   int
	bytes  int64
	flags  string
	reason string
	// respond are headers to apply to the response as it is sent, after
	// the app's own (a CUSTOM provider's headers for the client of an
	// allowed request).
	respond []*corev3.HeaderValueOption
	// grpc marks a gRPC request: the proxy's own replies to it are gRPC
	// (see writeText).
	grpc bool
	// streams, when set, tracks a connection the request hijacks (see
	// Hijack), as hijacked until release.
	streams  *streamSet
	hijacked *stream
}

func (r *recorder) WriteHeader(code int) {
	if r.code == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		r.code = code
		r.applyRespond()
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
		r.applyRespond()
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

func (r *recorder) applyRespond() {
	if len(r.respond) > 0 {
		applyHeaders(r.Header(), r.respond)
		r.respond = nil
	}
}

// Flush lets ReverseProxy stream (server-sent events, long polls).
func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// Hijack supports CONNECT and upgrades on HTTP/1. With streams set, the
// hijacked connection (an upgrade: ReverseProxy relays it in the
// handler) is tracked there until the handler is done (release), since
// the HTTP server forgets it: a drain waits for it and closes it when its
// time is up. The stream is added before the hijack, so that a drain
// never sees neither.
func (r *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := r.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("proxy: connection cannot be hijacked")
	}
	if r.streams == nil {
		return h.Hijack()
	}
	st := r.streams.add()
	if st == nil {
		return nil, nil, errors.New("proxy: shutting down")
	}
	c, brw, err := h.Hijack()
	if err != nil {
		st.end()
		return nil, nil, err
	}
	st.attach(c)
	r.hijacked = st
	return c, brw, nil
}

// recorders recycles recorders; a recorder is done with once the
// handler's ReverseProxy.ServeHTTP has returned.
var recorders = sync.Pool{New: func() any { return new(recorder) }}

func newRecorder(w http.ResponseWriter) *recorder {
	r := recorders.Get().(*recorder)
	r.ResponseWriter = w
	return r
}

func (r *recorder) release() {
	if r.hijacked != nil {
		r.hijacked.end()
	}
	*r = recorder{}
	recorders.Put(r)
}

func (r *recorder) fail(flags string, err error) {
	r.flags = flags
	if err != nil {
		r.reason = err.Error()
	}
}

func (r *recorder) status() int {
	if r.code == 0 {
		return http.StatusOK
	}
	return r.code
}

// countingBody counts the request body bytes read by the transport, for
// requests of unknown length.
type countingBody struct {
	io.ReadCloser
	n atomic.Int64
}

func (c *countingBody) Read(b []byte) (int, error) {
	n, err := c.ReadCloser.Read(b)
	c.n.Add(int64(n))
	return n, err
}

// countBody makes r's body countable when its length is not known in
// advance; requestSize then reports the body size after forwarding.
func countBody(r *http.Request) *countingBody {
	if r.ContentLength >= 0 || r.Body == nil || r.Body == http.NoBody {
		return nil
	}
	cb := &countingBody{ReadCloser: r.Body}
	r.Body = cb
	return cb
}

func requestSize(r *http.Request, cb *countingBody) int64 {
	if cb != nil {
		return cb.n.Load()
	}
	return max(r.ContentLength, 0)
}
