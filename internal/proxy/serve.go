package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"sync"

	"golang.org/x/net/http2"

	"github.com/zmesh/zmesh/internal/proxy/http1"
)

// httpServer serves one of the proxy's HTTP listeners (inbound, outbound)
// with two servers behind one face: HTTP/1.x connections, nearly all of
// the traffic, go to http1.Server's loop, which runs each request in the
// connection's goroutine and wakes no other per request; HTTP/2
// connections (ALPN h2, or cleartext with the preface) go to net/http's
// server, std, through a connListener. Both share the handler and
// ConnContext, so a request looks the same to the proxy either way.
//
// It has http.Server's Serve, Shutdown and Close, which is all the
// proxy's lifecycle (Run, Drain) uses.
type httpServer struct {
	h1  *http1.Server
	std *http.Server
	h2  *connListener // connections for std

	wg     sync.WaitGroup // the goroutines serving h1 connections
	stdErr chan error     // std.Serve's result, once Serve has started it
	once   sync.Once      // starts std.Serve, or (stopStd first) prevents it
	// stdStarted is set, within once, when Serve started std.Serve.
	stdStarted bool

	mu  sync.Mutex
	lns []net.Listener // what Serve accepts from, which Shutdown closes
}

// newHTTPServer wraps std, whose Handler, ConnContext, timeouts and header
// cap the HTTP/1.x side takes too.
func newHTTPServer(std *http.Server, addr net.Addr) *httpServer {
	s := &httpServer{std: std, h2: newConnListener(addr), stdErr: make(chan error, 1)}
	s.h1 = &http1.Server{
		Handler:           std.Handler,
		ConnContext:       std.ConnContext,
		ReadHeaderTimeout: std.ReadHeaderTimeout,
		IdleTimeout:       std.IdleTimeout,
		MaxHeaderBytes:    std.MaxHeaderBytes,
		Fallback:          s.toStd,
	}
	return s
}

// Serve accepts connections on ln until it fails (closed) and serves each
// one. Like http.Server's, it returns http.ErrServerClosed after Shutdown
// or Close, without waiting for the connections.
func (s *httpServer) Serve(ln net.Listener) error {
	s.once.Do(func() {
		s.stdStarted = true
		go func() { s.stdErr <- s.std.Serve(s.h2) }()
	})
	s.mu.Lock()
	s.lns = append(s.lns, ln)
	s.mu.Unlock()
	if s.closing() {
		ln.Close()
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.closing() {
				return http.ErrServerClosed
			}
			return err
		}
		s.serveConn(c)
	}
}

// serveConn hands c to the server that speaks its protocol.
func (s *httpServer) serveConn(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok && tc.ConnectionState().NegotiatedProtocol == http2.NextProtoTLS {
		s.h2.push(c)
		return
	}
	s.wg.Go(func() { s.h1.ServeConn(context.Background(), c) })
}

// toStd is h1's Fallback: a connection that opened with the HTTP/2
// preface goes to std with the preface read again, keeping the original
// destination of a captured one.
func (s *httpServer) toStd(c net.Conn, early []byte) {
	rc := &replayConn{Conn: c, early: early}
	if prev, ok := c.(*replayConn); ok {
		rc.dst = prev.dst
	}
	s.h2.push(rc)
}

// Shutdown stops both servers gracefully (see http1.Server.Shutdown and
// http.Server.Shutdown) and waits for the HTTP/1.x connections'
// goroutines, upgraded connections included, within ctx.
func (s *httpServer) Shutdown(ctx context.Context) error {
	s.closeListeners()
	var stdErr error
	var wg sync.WaitGroup
	wg.Go(func() { stdErr = s.std.Shutdown(ctx) })
	err := s.h1.Shutdown(ctx)
	wg.Wait()
	s.stopStd()
	if err == nil {
		err = stdErr
	}
	if err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close closes every connection of both servers at once.
func (s *httpServer) Close() error {
	s.closeListeners()
	err := errors.Join(s.h1.Close(), s.std.Close())
	s.stopStd()
	return err
}

// closeListeners closes what Serve accepts from, as http.Server's
// Shutdown and Close do: new connections are refused from now on.
func (s *httpServer) closeListeners() {
	s.h2.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ln := range s.lns {
		ln.Close()
	}
}

// stopStd closes std's listener and waits for its Serve to return, when
// Serve started it.
func (s *httpServer) stopStd() {
	s.h2.Close()
	s.once.Do(func() {}) // Serve must not start std.Serve from now on
	if s.stdStarted {
		// Put the result back whatever it is: a second call (Close after
		// Shutdown, a drain then the proxy's stop) must not wait forever.
		s.stdErr <- <-s.stdErr
	}
}

// closing reports whether Shutdown or Close has begun.
func (s *httpServer) closing() bool {
	select {
	case <-s.h2.done:
		return true
	default:
		return false
	}
}
