package proxy

import (
	"context"
	"net"
	"sync/atomic"
	"time"

	networking "istio.io/api/networking/v1alpha3"
)

// flagOverflow is Envoy's response flag for a request refused by a
// circuit breaker (connection pool limits).
const flagOverflow = "UO"

// connPool enforces a DestinationRule's connection pool limits for one
// destination (host, subset, port), as Envoy's circuit breakers do for
// a cluster: at most tcp.maxConnections requests or streams at once (one
// upstream connection each, as with HTTP/1.1), and at most
// http.http1MaxPendingRequests waiting for one of those; past that a
// request is refused at once (503, flag UO) rather than queued without
// bound. http.http2MaxRequests bounds the requests in flight (of either
// HTTP version, as Istio documents it), refusing past it without
// waiting. Zero means Istio's default, unlimited. The limits are the client
// proxy's own, not shared with other clients.
type connPool struct {
	slots       chan struct{} // capacity maxConnections; nil: unlimited
	maxPending  int64         // 0: unlimited
	pending     atomic.Int64
	maxRequests int64 // 0: unlimited
	requests    atomic.Int64
	// connectTimeout is tcp.connectTimeout, which bounds the dial of a
	// new connection to the destination's endpoints (0: the proxy's
	// default, dialTimeout).
	connectTimeout time.Duration
	// perConn is http.maxRequestsPerConnection: the requests one upstream
	// connection carries before it is closed and replaced (0: unlimited).
	perConn int
}

// newConnPool returns the pool of cp, nil when it limits nothing.
func newConnPool(cp *networking.ConnectionPoolSettings) *connPool {
	n, reqs := cp.GetTcp().GetMaxConnections(), cp.GetHttp().GetHttp2MaxRequests()
	connect := cp.GetTcp().GetConnectTimeout().AsDuration()
	perConn := cp.GetHttp().GetMaxRequestsPerConnection()
	if n <= 0 && reqs <= 0 && connect <= 0 && perConn <= 0 {
		return nil
	}
	c := &connPool{maxRequests: int64(max(reqs, 0)), connectTimeout: max(connect, 0), perConn: int(max(perConn, 0))}
	if n > 0 {
		c.slots = make(chan struct{}, n)
		c.maxPending = int64(cp.GetHttp().GetHttp1MaxPendingRequests())
	}
	return c
}

// acquire takes a slot, waiting for one while the pending queue has
// room, until ctx ends. It returns false when the request overflows (or
// ctx ended first); otherwise the caller must call release once done. A
// nil pool always admits.
func (c *connPool) acquire(ctx context.Context) bool {
	if c == nil {
		return true
	}
	if c.maxRequests > 0 && c.requests.Add(1) > c.maxRequests {
		c.requests.Add(-1)
		return false
	}
	if c.slots == nil || c.take(ctx) {
		return true
	}
	if c.maxRequests > 0 {
		c.requests.Add(-1)
	}
	return false
}

// take takes a connection slot, waiting while the pending queue has room.
func (c *connPool) take(ctx context.Context) bool {
	select {
	case c.slots <- struct{}{}:
		return true
	default:
	}
	if n := c.pending.Add(1); c.maxPending > 0 && n > c.maxPending {
		c.pending.Add(-1)
		return false
	}
	defer c.pending.Add(-1)
	select {
	case c.slots <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

// release gives back a slot acquire took.
func (c *connPool) release() {
	if c == nil {
		return
	}
	if c.maxRequests > 0 {
		c.requests.Add(-1)
	}
	if c.slots != nil {
		<-c.slots
	}
}

// bodyOverflow is Envoy's answer to a request its circuit breaker refused.
const bodyOverflow = "upstream connect error or disconnect/reset before headers. reset reason: overflow"

// connectTimeoutKey is the context key of the dial bound a request's or
// stream's destination policy sets (connPool.connectTimeout).
type connectTimeoutKey struct{}

// withConnectTimeout returns ctx carrying c's connect timeout, for the
// dial that may follow; ctx itself when c sets none.
func (c *connPool) withConnectTimeout(ctx context.Context) context.Context {
	if c == nil || c.connectTimeout <= 0 {
		return ctx
	}
	return context.WithValue(ctx, connectTimeoutKey{}, c.connectTimeout)
}

// perConnKey is the context key of the maxRequestsPerConnection of an
// HTTP request's destination policy, read where the request picks its
// upstream connection (outbound.RoundTrip).
type perConnKey struct{}

// forRequest returns ctx carrying what of c the HTTP request's transport
// must honour: the connect timeout and maxRequestsPerConnection.
func (c *connPool) forRequest(ctx context.Context) context.Context {
	ctx = c.withConnectTimeout(ctx)
	if c == nil || c.perConn <= 0 {
		return ctx
	}
	return context.WithValue(ctx, perConnKey{}, c.perConn)
}

// perConnLimit is the maxRequestsPerConnection forRequest put in ctx, 0
// when none.
func perConnLimit(ctx context.Context) int {
	n, _ := ctx.Value(perConnKey{}).(int)
	return n
}

// dialerFor returns the dialer for a connection made on behalf of ctx:
// bounded by its destination's connectTimeout when it carries one, else
// by dialTimeout. A shared HTTP/2 connection is dialed for the request
// that first needs it, under that request's bound.
func dialerFor(ctx context.Context) *net.Dialer {
	d := newDialer()
	if t, ok := ctx.Value(connectTimeoutKey{}).(time.Duration); ok && t > 0 {
		d.Timeout = t
	}
	return d
}

// dialContext dials as dialerFor(ctx) does, for transports.
func dialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if network != "tcp" {
		return dialerFor(ctx).DialContext(ctx, network, addr)
	}
	return dial(ctx, dialerFor(ctx), addr)
}
