package http1

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Server serves HTTP/1.x on connections that the caller has accepted (and,
// for TLS, handshaken), running each request in the connection's own
// goroutine: read, handle, write, read the next one, with no other
// goroutine woken on the way.
//
// net/http's server runs the handler in the connection's goroutine too,
// but after every request whose body is done it starts a second goroutine
// that blocks in a read to notice a client that goes away, and wakes and
// waits for it before reading the next request: two scheduler hand-offs
// and a failed read per request, which on a small paravirtualized VM cost
// more than the proxy's own work. Server only starts that watch once a
// request has been in the handler for WatchAfter, so a request that ends
// sooner (nearly all of a proxy's) never pays for it, and a long one (a
// long poll whose client leaves) still has its context cancelled. Nor does
// a request arm a timer for it: one goroutine per Server, running while it
// has connections, looks at them every WatchAfter (see sweep). For the
// same reason the read deadlines are set only when they must change (see
// serverConn.waitDeadline): on this kind of machine, arming a timer while
// no thread waits in the network poller wakes one.
//
// Requests are parsed by net/http's own parser (http.ReadRequest), with the
// checks net/http's server adds around it (header size cap, Host rules,
// header validity, Expect, protocol versions), so framing and smuggling
// safety stay net/http's. Server does not speak HTTP/2: a connection that
// opens with the HTTP/2 preface goes to Fallback with its bytes replayed.
// Protocol upgrades (WebSocket) are served through http.Hijacker.
//
// The zero value is not usable: Handler must be set. Fields must not be
// changed once ServeConn has been called.
type Server struct {
	// Handler answers every request.
	Handler http.Handler
	// ConnContext, when set, derives a connection's context (the base of
	// its requests' contexts) from the one ServeConn was given.
	ConnContext func(ctx context.Context, c net.Conn) context.Context
	// Fallback, when set, takes a connection that opens with the HTTP/2
	// connection preface, with the bytes already read from it (early, to
	// be read again before c's), and owns it from then on. Without
	// Fallback, such a connection is answered 505 and closed.
	Fallback func(c net.Conn, early []byte)
	// ReadHeaderTimeout bounds the time to read a request's line and
	// headers once its first byte has arrived; zero means none.
	ReadHeaderTimeout time.Duration
	// IdleTimeout bounds the wait for the next request on a kept-alive
	// connection (and for the first one); zero means none.
	IdleTimeout time.Duration
	// MaxHeaderBytes caps a request's line and headers (net/http's
	// meaning: 4 KiB of slack are allowed above it); zero means 1 MiB.
	MaxHeaderBytes int
	// WatchAfter is about how long a request runs before Server starts
	// watching its connection for the client going away (between once
	// and twice that); zero means one second.
	WatchAfter time.Duration
	// Log gets the connection errors worth a line (at debug level); nil
	// discards them.
	Log *slog.Logger

	closing  atomic.Bool // Shutdown or Close has been called
	mu       sync.Mutex
	conns    map[*serverConn]struct{}
	idle     chan struct{} // closed when conns becomes empty during Shutdown
	sweeping bool          // the sweep goroutine runs
	emptied  chan struct{} // tells sweep that conns became empty
}

// ServeConn serves c until the client closes it, an error ends it, the
// server shuts down, or a handler hijacks it. It blocks until then and
// closes c unless it was handed to Fallback or hijacked. ctx is the base of
// the requests' contexts; cancelling it does not close c (Shutdown and
// Close do).
func (s *Server) ServeConn(ctx context.Context, c net.Conn) {
	sc := newServerConn(s, c)
	if !s.track(sc) {
		c.Close()
		return
	}
	defer s.untrack(sc)
	sc.serve(ctx)
}

// Shutdown stops the server gracefully: connections waiting for a request
// are closed at once, and those in a request are closed once their
// response is written (it says Connection: close). It returns when no
// connection is left, or with ctx's error when ctx ends first (the
// caller then calls Close). ServeConn refuses connections from now on.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing.Store(true)
	if s.idle == nil {
		s.idle = make(chan struct{})
		if len(s.conns) == 0 {
			close(s.idle)
		}
	}
	idle := s.idle
	for sc := range s.conns {
		sc.closeIfIdle()
	}
	s.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close closes every connection at once, in a request or not, and
// refuses new ones. Handlers still running have their requests' contexts
// cancelled (so that a request stuck upstream ends now) and see their
// writes fail.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closing.Store(true)
	for sc := range s.conns {
		sc.c.Close()
		sc.cr.cancelRequest()
	}
	s.mu.Unlock()
	return nil
}

// track adds sc to the live connections; false once the server shuts
// down.
func (s *Server) track(sc *serverConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		return false
	}
	if s.conns == nil {
		s.conns = map[*serverConn]struct{}{}
		s.emptied = make(chan struct{}, 1)
	}
	s.conns[sc] = struct{}{}
	if !s.sweeping {
		s.sweeping = true
		go s.sweep()
	}
	return true
}

// untrack forgets sc, which is closed, hijacked or handed off.
func (s *Server) untrack(sc *serverConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, sc)
	if len(s.conns) > 0 {
		return
	}
	select {
	case s.emptied <- struct{}{}:
	default:
	}
	if s.idle != nil {
		select {
		case <-s.idle:
		default:
			close(s.idle)
		}
	}
}

// sweep starts the watch of every request that has been in its handler
// for a whole period (WatchAfter): each period it notes each connection's
// request, and watches those whose request is the one it noted the period
// before. It runs while the server has connections: the first one starts
// it, and it returns once the last one has ended.
func (s *Server) sweep() {
	t := time.NewTicker(s.watchAfter())
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-s.emptied:
		}
		s.mu.Lock()
		if len(s.conns) == 0 {
			s.sweeping = false
			s.mu.Unlock()
			return
		}
		for sc := range s.conns {
			sc.cr.sweep()
		}
		s.mu.Unlock()
	}
}

func (s *Server) maxHeaderBytes() int64 {
	if s.MaxHeaderBytes > 0 {
		return int64(s.MaxHeaderBytes)
	}
	return http.DefaultMaxHeaderBytes
}

func (s *Server) watchAfter() time.Duration {
	if s.WatchAfter > 0 {
		return s.WatchAfter
	}
	return time.Second
}

func (s *Server) logf(msg string, args ...any) {
	if s.Log != nil {
		s.Log.Debug(msg, args...)
	}
}
