package http1

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// rawServer is a loopback TCP server whose handler speaks (or fails to
// speak) HTTP/1.1 byte by byte. It counts connections and requests.
type rawServer struct {
	ln       net.Listener
	conns    atomic.Int32 // accepted
	closed   chan int     // connection index, when the peer closed it
	mu       sync.Mutex
	open     []net.Conn
	wg       sync.WaitGroup
	requests atomic.Int32
}

// rawHandler serves connection n (0-based) of s. It returns when it is
// done with the connection, which the server then closes.
type rawHandler func(s *rawServer, n int, c net.Conn, br *bufio.Reader)

func newRawServer(t testing.TB, h rawHandler) *rawServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawServer{ln: ln, closed: make(chan int, 100)}
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n := int(s.conns.Add(1)) - 1
			s.mu.Lock()
			s.open = append(s.open, c)
			s.mu.Unlock()
			s.wg.Go(func() {
				defer c.Close()
				h(s, n, c, bufio.NewReader(c))
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.open {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *rawServer) addr() string { return s.ln.Addr().String() }

// readRequest reads one request and its body; ok is false when the peer
// closed the connection or sent something else.
func (s *rawServer) readRequest(br *bufio.Reader) (*http.Request, bool) {
	req, err := http.ReadRequest(br)
	if err != nil {
		return nil, false
	}
	io.Copy(io.Discard, req.Body)
	s.requests.Add(1)
	return req, true
}

// waitEOF waits until the peer closes c (or d passes), and reports
// whether it did.
func waitEOF(c net.Conn, br *bufio.Reader, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, br)
	return err == nil
}

const okResponse = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

// keepAlive answers every request on a connection with okResponse.
func keepAlive(s *rawServer, _ int, c net.Conn, br *bufio.Reader) {
	for {
		if _, ok := s.readRequest(br); !ok {
			return
		}
		if _, err := io.WriteString(c, okResponse); err != nil {
			return
		}
	}
}

// fallback is a RoundTripper that answers 299 and counts its requests.
type fallback struct {
	calls     atomic.Int32
	closeIdle atomic.Int32
}

func (f *fallback) RoundTrip(req *http.Request) (*http.Response, error) {
	f.calls.Add(1)
	if req.Body != nil {
		req.Body.Close()
	}
	return &http.Response{StatusCode: 299, Body: http.NoBody, Request: req, Header: http.Header{}}, nil
}

func (f *fallback) CloseIdleConnections() { f.closeIdle.Add(1) }

// newTransport returns a Transport to addr with fb (nil: an
// http.Transport) behind it, closed at the end of the test.
func newTransport(t testing.TB, addr string, fb http.RoundTripper, tune func(*Config)) *Transport {
	t.Helper()
	if fb == nil {
		tr := &http.Transport{DisableCompression: true}
		t.Cleanup(tr.CloseIdleConnections)
		fb = tr
	}
	cfg := Config{Addr: addr, Fallback: fb}
	if tune != nil {
		tune(&cfg)
	}
	tr, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

// do sends req and reads the whole response.
func do(t testing.TB, rt http.RoundTripper, req *http.Request) (*http.Response, string, error) {
	t.Helper()
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return nil, "", err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b), err
}

func get(t testing.TB, url string) *http.Request {
	t.Helper()
	return newRequest(t, context.Background(), "GET", url, nil)
}

func newRequest(t testing.TB, ctx context.Context, method, url string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// idleCount is the number of connections in tr's pool.
func (t *Transport) idleCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.idle)
}

// countingServer is an httptest server that counts new connections.
func countingServer(t testing.TB, h http.Handler) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			n.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &n
}

// keepAliveThenReport is keepAlive that reports on s.closed when the
// client has closed the connection.
func keepAliveThenReport(s *rawServer, n int, c net.Conn, br *bufio.Reader) {
	keepAlive(s, n, c, br)
	s.closed <- n
}
