package http1

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// Defaults for Config's zero values.
const (
	DefaultDialTimeout            = 5 * time.Second
	DefaultMaxIdleConns           = 64
	DefaultIdleTimeout            = 90 * time.Second
	DefaultMaxResponseHeaderBytes = 1 << 20 // http.Transport's default
	DefaultMaxBodyBytes           = 64 << 10
)

// max1xx bounds the informational responses read before the final one.
// http.Transport bounds them only by header bytes, and not at all when a
// ClientTrace takes them (as ReverseProxy's does); an app that sends 1xx
// forever would hold the caller forever.
const max1xx = 32

// Config configures a Transport. Addr and Fallback are required; other
// zero values mean the defaults above.
type Config struct {
	// Addr is the upstream's host:port. Every request is sent there,
	// whatever its URL's host says.
	Addr string
	// Dial, when set, opens the connections to Addr instead of a plain
	// TCP dial: the mesh's client proxy dials mutual TLS with it. Its
	// errors are returned as they are, so the caller can tell a failed
	// dial (nothing sent) from a failed exchange.
	Dial func(ctx context.Context) (net.Conn, error)
	// Scheme is the URL scheme of the requests the fast path takes:
	// "http" (the default), or "https" with a Dial that makes TLS
	// connections.
	Scheme string
	// Fallback carries the requests the fast path does not (see
	// Transport). CloseIdleConnections is passed on to it when it has
	// that method.
	Fallback http.RoundTripper
	// DialTimeout bounds a connection's dial.
	DialTimeout time.Duration
	// MaxIdleConns bounds the idle pool; a connection that would exceed
	// it is closed.
	MaxIdleConns int
	// MaxConns bounds the connections open at once, idle or busy. When
	// none is idle and the bound is reached, a request goes to Fallback
	// instead of opening another: the mesh's client proxy falls back on
	// its multiplexed HTTP/2 connection rather than paying a mutual TLS
	// handshake per concurrent request in a burst. 0 means no bound.
	MaxConns int
	// IdleTimeout is how long a connection may stay idle in the pool; an
	// older one is closed, never reused.
	IdleTimeout time.Duration
	// MaxRequestsPerConn bounds the exchanges one connection carries: the
	// one that reaches it closes the connection when it ends, and the next
	// request dials anew (a DestinationRule's maxRequestsPerConnection;
	// 1 disables keep-alive). 0 means no bound.
	MaxRequestsPerConn int
	// MaxResponseHeaderBytes bounds the bytes read for a response's
	// header (and any informational responses before it).
	MaxResponseHeaderBytes int64
	// MaxBodyBytes is the largest request body the fast path sends. The
	// body is written before the response is read, so it must fit in the
	// sockets' buffers: an app that answers early without reading it must
	// not leave the writer blocked.
	MaxBodyBytes int64
	// Now is the clock idle connections are aged by; nil means time.Now.
	Now func() time.Time
}

// Transport is an http.RoundTripper for HTTP/1.1 to one address. For a
// URL of Config.Scheme with no CONNECT, Expect or trailers, and no body
// or one of known length up to MaxBodyBytes, it writes the request, reads
// the response and lends the connection to the response's Body, all in
// the caller's goroutine; the connection goes back to the pool when the
// body has been read to EOF, and is closed when the body is closed early,
// on any error, and when the request or response says Connection: close.
// A protocol upgrade answered 101 hands the caller the connection itself
// as the Body (an io.ReadWriteCloser, as ReverseProxy needs). Every other
// request goes to Config.Fallback.
//
// A request on a reused connection that fails before any byte of the
// response has arrived (the app closed the idle connection) is sent again
// once on a new connection when that is safe, by http.Transport's rules.
// With no read loop to notice such a close while a connection is idle, a
// request that may not be sent twice is only sent on a reused connection
// that a non-blocking peek finds still open (live).
//
// The request body is written in full before the response is read: an
// answer the app sends before reading the body is seen only after, and a
// failed write (the app answered and closed) fails the request where
// http.Transport might have returned that answer. Hence MaxBodyBytes.
//
// A request whose context ends is aborted at once, also while its
// response body is being read. The only httptrace hook it calls is
// Got1xxResponse (ReverseProxy's way of passing on 103 Early Hints).
//
// A Transport is safe for concurrent use.
type Transport struct {
	addr        string
	scheme      string
	dialFn      func(ctx context.Context) (net.Conn, error)
	fallback    http.RoundTripper
	dialer      net.Dialer
	maxIdle     int
	maxConns    int64
	maxPerConn  int
	open        atomic.Int64 // connections dialed and not yet closed
	idleTimeout time.Duration
	maxHeader   int64
	maxBody     int64
	now         func() time.Time

	mu    sync.Mutex
	idle  []*conn // oldest first
	sweep *time.Timer
	armed bool // sweep is set to fire
}

// New returns a Transport for cfg.
func New(cfg Config) (*Transport, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	t := &Transport{
		addr:        cfg.Addr,
		scheme:      cfg.Scheme,
		dialFn:      cfg.Dial,
		fallback:    cfg.Fallback,
		dialer:      net.Dialer{Timeout: orDefault(cfg.DialTimeout, DefaultDialTimeout), KeepAlive: 30 * time.Second},
		maxIdle:     orDefault(cfg.MaxIdleConns, DefaultMaxIdleConns),
		maxConns:    int64(cfg.MaxConns),
		maxPerConn:  cfg.MaxRequestsPerConn,
		idleTimeout: orDefault(cfg.IdleTimeout, DefaultIdleTimeout),
		maxHeader:   orDefault(cfg.MaxResponseHeaderBytes, DefaultMaxResponseHeaderBytes),
		maxBody:     orDefault(cfg.MaxBodyBytes, DefaultMaxBodyBytes),
		now:         cfg.Now,
	}
	if t.now == nil {
		t.now = time.Now
	}
	if t.scheme == "" {
		t.scheme = "http"
	}
	return t, nil
}

func (c *Config) validate() error {
	switch {
	case c.Addr == "":
		return errors.New("http1: no upstream address")
	case c.Fallback == nil:
		return errors.New("http1: no fallback RoundTripper")
	case c.Scheme != "" && c.Scheme != "http" && c.Scheme != "https":
		return fmt.Errorf("http1: scheme %q (want http or https)", c.Scheme)
	case c.Scheme == "https" && c.Dial == nil:
		return errors.New("http1: https needs a Dial that makes TLS connections")
	case c.DialTimeout < 0, c.MaxIdleConns < 0, c.MaxConns < 0, c.MaxRequestsPerConn < 0, c.IdleTimeout < 0, c.MaxResponseHeaderBytes < 0, c.MaxBodyBytes < 0:
		return errors.New("http1: negative limit")
	}
	return nil
}

func orDefault[T int | int64 | time.Duration](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// fast reports whether req can be done in the caller's goroutine. What
// cannot: CONNECT, upgrades that carry a body,
// Expect: 100-continue (the body waits for an answer), request trailers
// and bodies of unknown length (chunked: the caller may stream them) or
// above MaxBodyBytes (see Config), and URLs of another scheme than
// Config.Scheme.
func (t *Transport) fast(req *http.Request) bool {
	if req.URL == nil || req.URL.Scheme != t.scheme || req.Method == http.MethodConnect ||
		req.Header.Get("Expect") != "" || len(req.Trailer) > 0 || len(req.TransferEncoding) > 0 {
		return false
	}
	if req.Body == nil || req.Body == http.NoBody {
		return true
	}
	if IsUpgrade(req) {
		return false // an upgrade with a body: leave it to the fallback
	}
	return req.ContentLength > 0 && req.ContentLength <= t.maxBody
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !t.fast(req) {
		return t.fallback.RoundTrip(req)
	}
	ctx := req.Context()
	if err := ctx.Err(); err != nil {
		closeBody(req)
		return nil, err
	}
	c, err := t.get(ctx, isReplayable(req), IsUpgrade(req))
	if err == errAllBusy {
		return t.fallback.RoundTrip(req)
	}
	if err != nil {
		closeBody(req)
		return nil, err
	}
	resp, retry, err := t.exchange(ctx, c, req)
	if retry {
		// A stale keep-alive connection: once more, on a new one.
		req2, rerr := rewind(req)
		if rerr != nil {
			return nil, err
		}
		if c, err = t.dial(ctx, false); err != nil {
			closeBody(req2)
			return nil, err
		}
		resp, _, err = t.exchange(ctx, c, req2)
	}
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// reserve counts a connection about to be dialed as open, unless that
// would pass MaxConns.
func (t *Transport) reserve() bool {
	for {
		n := t.open.Load()
		if t.maxConns > 0 && n >= t.maxConns {
			return false
		}
		if t.open.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// errAllBusy is get's answer when no connection is idle and MaxConns are
// open.
var errAllBusy = errors.New("http1: all connections busy")

// get returns an idle connection, else a new one. A reused connection is
// first checked for a close the app has sent while it was idle when the
// request could not be sent again after such a close (live).
func (t *Transport) get(ctx context.Context, retryable, upgrade bool) (*conn, error) {
	for {
		c := t.take()
		if c == nil {
			if upgrade {
				// Not bounded by MaxConns: an upgraded connection
				// cannot share the fallback's multiplexed one.
				return t.dial(ctx, false)
			}
			if !t.reserve() {
				return nil, errAllBusy
			}
			return t.dial(ctx, true)
		}
		if retryable || c.live() {
			c.getBuffers()
			return c, nil
		}
		c.close()
	}
}

// exchange sends req on c and reads the response's header. On success c
// belongs to the response's body (or is back in the pool when there is
// none). On failure c is closed, and retry says whether the request may be
// sent again on a new connection: c was reused, and the app closed it
// before a byte of the response arrived.
func (t *Transport) exchange(ctx context.Context, c *conn, req *http.Request) (_ *http.Response, retry bool, _ error) {
	var stop func() bool
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, c.abortFn)
	}
	read, written := c.nread, c.nwritten
	c.ioErr = nil
	c.uses++
	step := "write request to"
	err := req.Write(c.bw)
	if err == nil {
		err = c.bw.Flush()
	}
	var resp *http.Response
	if err == nil {
		step = "read response from"
		resp, err = t.readResponse(ctx, c, req)
	}
	if err != nil {
		if stop != nil {
			stop()
		}
		c.close()
		if ctx.Err() != nil {
			return nil, false, ctx.Err()
		}
		if c.reused && c.ioErr != nil && c.nread == read {
			retry = isReplayable(req) || c.nwritten == written && (outgoingEmpty(req) || req.GetBody != nil)
		}
		return nil, retry, fmt.Errorf("http1: %s %s: %w", step, t.addr, err)
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// The connection is now the caller's tunnel (ReverseProxy
		// copies both ways); it never returns to the pool.
		resp.Body = &upgraded{c: c, stop: stop}
		return resp, false, nil
	}
	keep := !resp.Close && !req.Close && !httpguts.HeaderValuesContainsToken(req.Header["Connection"], "close") &&
		(t.maxPerConn == 0 || c.uses < t.maxPerConn)
	if resp.Body == http.NoBody {
		c.release(stop, keep)
		return resp, false, nil
	}
	resp.Body = &body{rc: resp.Body, c: c, ctx: ctx, stop: stop, keep: keep}
	return resp, false, nil
}

// readResponse reads the final response to req from c, passing
// informational ones to the request's Got1xxResponse hook.
func (t *Transport) readResponse(ctx context.Context, c *conn, req *http.Request) (*http.Response, error) {
	c.limit = t.maxHeader
	for n := 0; ; n++ {
		resp, err := http.ReadResponse(c.br, req)
		if err != nil {
			if c.limit <= 0 {
				err = fmt.Errorf("response headers exceeded %d bytes", t.maxHeader)
			}
			return nil, err
		}
		code := resp.StatusCode
		if code < 100 || code > 199 {
			c.limit = math.MaxInt64
			return resp, nil
		}
		if code == http.StatusSwitchingProtocols {
			if !IsUpgrade(req) {
				return nil, errors.New("101 Switching Protocols to a request for no upgrade")
			}
			c.limit = math.MaxInt64
			return resp, nil
		}
		if n == max1xx {
			return nil, fmt.Errorf("more than %d informational responses", max1xx)
		}
		if trace := httptrace.ContextClientTrace(ctx); trace != nil && trace.Got1xxResponse != nil {
			if err := trace.Got1xxResponse(code, textproto.MIMEHeader(resp.Header)); err != nil {
				return nil, err
			}
			// Delivered: the hook is the limit (as http.Transport).
			c.limit = t.maxHeader
		}
	}
}

// CloseIdleConnections closes the idle connections, and the fallback's.
// Connections in use are not interrupted.
func (t *Transport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = nil
	if t.sweep != nil {
		t.sweep.Stop()
	}
	t.armed = false
	t.mu.Unlock()
	for _, c := range idle {
		c.close()
	}
	if ci, ok := t.fallback.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

var _ http.RoundTripper = (*Transport)(nil)
