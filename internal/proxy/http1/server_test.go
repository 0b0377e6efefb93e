package http1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// testServer is a Server on a loopback listener, with the accept loop a
// caller of ServeConn would have.
type testServer struct {
	s  *Server
	ln net.Listener
	wg sync.WaitGroup
}

func startServer(t testing.TB, s *Server) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{s: s, ln: ln}
	ts.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			ts.wg.Go(func() { s.ServeConn(context.Background(), c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			s.Close()
		}
		ts.wg.Wait()
	})
	return ts
}

// dial opens a raw connection to the server.
func (ts *testServer) dial(t testing.TB) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", ts.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

// exchange writes raw bytes and reads one response to a request of
// method.
func exchange(t testing.TB, c net.Conn, br *bufio.Reader, raw, method string) *http.Response {
	t.Helper()
	if raw != "" {
		if _, err := io.WriteString(c, raw); err != nil {
			t.Fatal(err)
		}
	}
	for {
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			t.Fatalf("reading the response to %q: %v", raw, err)
		}
		// Informational responses but those a test waits for (100, 101)
		// come before the one that answers.
		if resp.StatusCode < 200 && resp.StatusCode != 100 && resp.StatusCode != 101 {
			continue
		}
		return resp
	}
}

// readBody reads and closes a response's body.
func readBody(t testing.TB, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// echoHandler answers with the request's method, host, path and body.
func echoHandler(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	w.Header().Set("Content-Type", "text/plain")
	io.WriteString(w, r.Method+" "+r.Host+" "+r.URL.Path+" "+string(b))
}

func TestServerKeepAlive(t *testing.T) {
	ts := startServer(t, &Server{Handler: http.HandlerFunc(echoHandler)})
	c, br := ts.dial(t)
	for i := range 3 {
		resp := exchange(t, c, br, "GET /a HTTP/1.1\r\nHost: example\r\n\r\n", "GET")
		if got := readBody(t, resp); resp.StatusCode != 200 || got != "GET example /a " {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, got)
		}
		if resp.ContentLength != int64(len("GET example /a ")) || resp.Close {
			t.Fatalf("request %d: Content-Length %d, close %v", i, resp.ContentLength, resp.Close)
		}
	}
}

// TestServerRefuses: what net/http's server refuses before any handler,
// this server refuses with the same status, and closes the connection.
func TestServerRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, raw string
		code      int
	}{
		{"HTTP/1.1 without Host", "GET / HTTP/1.1\r\n\r\n", 400},
		{"absolute form without Host", "GET http://example/ HTTP/1.1\r\n\r\n", 400},
		{"two Host headers", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
		{"malformed Host", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
		{"invalid header name", "GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n", 400},
		{"control byte in a value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", 400},
		{"malformed request line", "GET /\r\nHost: a\r\n\r\n", 400},
		{"two different Content-Lengths", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400},
		{"negative Content-Length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400},
		{"chunked twice", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501},
		{"unknown transfer coding", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
		{"HTTP/2.0 request line", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505},
		{"HTTP/0.9 version", "GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505},
		{"an Expect other than 100-continue", "POST / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\nx", 417},
		{"headers past the cap", "GET / HTTP/1.1\r\nHost: a\r\nX: " + strings.Repeat("a", 8<<10) + "\r\n\r\n", 431},
	} {
		t.Run(tc.name, func(t *testing.T) {
			called := false
			ts := startServer(t, &Server{
				Handler:        http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called = true }),
				MaxHeaderBytes: 1 << 10,
			})
			c, br := ts.dial(t)
			resp := exchange(t, c, br, tc.raw, "GET")
			readBody(t, resp)
			if resp.StatusCode != tc.code || !resp.Close {
				t.Fatalf("got %d (close %v), want %d and close", resp.StatusCode, resp.Close, tc.code)
			}
			if called {
				t.Fatal("the handler was called")
			}
			if n, err := br.Read(make([]byte, 1)); n != 0 || err == nil {
				t.Fatalf("connection still open after the refusal: %d %v", n, err)
			}
		})
	}
}

// TestServerConnectionReuse: which requests leave the connection open for
// the next one, as HTTP/1.x says.
func TestServerConnectionReuse(t *testing.T) {
	for _, tc := range []struct {
		name, raw  string
		handler    http.HandlerFunc
		keep       bool
		wantHeader string // Connection header of the response
	}{
		{"HTTP/1.1", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", echoHandler, true, ""},
		{"Connection: close", "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", echoHandler, false, "close"},
		{"HTTP/1.0", "GET / HTTP/1.0\r\n\r\n", echoHandler, false, "close"},
		{"HTTP/1.0 keep-alive", "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", echoHandler, true, "keep-alive"},
		{"HTTP/1.0 keep-alive, unknown length", "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
			func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("x")); w.(http.Flusher).Flush() }, false, "close"},
		{"handler says close", "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
			func(w http.ResponseWriter, r *http.Request) { w.Header().Set("Connection", "close") }, false, "close"},
		{"small body left unread", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
			func(http.ResponseWriter, *http.Request) {}, true, ""},
		{"short Content-Length written", "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
			func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", "10")
				w.Write([]byte("abc"))
			}, false, ""},
		{"101 written without a hijack", "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
			func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusSwitchingProtocols) }, false, "close"},
		{"Expect: 100-continue answered without reading", "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
			func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(403) }, false, "close"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, &Server{Handler: tc.handler})
			c, br := ts.dial(t)
			resp := exchange(t, c, br, tc.raw, "GET")
			if tc.name == "short Content-Length written" {
				// The body is short: its read fails when the server closes.
				io.ReadAll(resp.Body)
				resp.Body.Close()
			} else {
				readBody(t, resp)
			}
			got := resp.Header.Get("Connection")
			if resp.Close {
				got = "close" // ReadResponse takes it out of the map
			}
			if got != tc.wantHeader {
				t.Fatalf("Connection: %q, want %q", got, tc.wantHeader)
			}
			c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			_, err := br.ReadByte()
			var ne net.Error
			open := errors.As(err, &ne) && ne.Timeout()
			if open != tc.keep {
				t.Fatalf("connection open after the response: %v, want %v (read: %v)", open, tc.keep, err)
			}
		})
	}
}

// TestServerResponseFraming: how a response's body is delimited, by what
// the handler did.
func TestServerResponseFraming(t *testing.T) {
	for _, tc := range []struct {
		name, method string
		handler      http.HandlerFunc
		check        func(t *testing.T, resp *http.Response, body string)
	}{
		{"short body gets a Content-Length", "GET", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") },
			func(t *testing.T, resp *http.Response, body string) {
				if resp.ContentLength != 5 || body != "hello" || len(resp.TransferEncoding) != 0 {
					t.Fatalf("length %d, TE %v, body %q", resp.ContentLength, resp.TransferEncoding, body)
				}
			}},
		{"a flushed body is chunked", "GET", func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "a")
			w.(http.Flusher).Flush()
			io.WriteString(w, "b")
		}, func(t *testing.T, resp *http.Response, body string) {
			if resp.ContentLength != -1 || body != "ab" || len(resp.TransferEncoding) != 1 {
				t.Fatalf("length %d, TE %v, body %q", resp.ContentLength, resp.TransferEncoding, body)
			}
		}},
		{"a long body is chunked", "GET", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, strings.Repeat("x", 10<<10)) },
			func(t *testing.T, resp *http.Response, body string) {
				if len(body) != 10<<10 || len(resp.TransferEncoding) != 1 {
					t.Fatalf("TE %v, body of %d bytes", resp.TransferEncoding, len(body))
				}
			}},
		{"trailers, declared and by prefix", "GET", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Trailer", "X-Sum")
			io.WriteString(w, "a")
			w.(http.Flusher).Flush()
			w.Header().Set("X-Sum", "1")
			w.Header().Set(http.TrailerPrefix+"X-Late", "2")
		}, func(t *testing.T, resp *http.Response, body string) {
			if resp.Trailer.Get("X-Sum") != "1" || resp.Trailer.Get("X-Late") != "2" || body != "a" {
				t.Fatalf("trailers %v, body %q", resp.Trailer, body)
			}
		}},
		{"declared Content-Length", "GET", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "3")
			io.WriteString(w, "abc")
			if _, err := io.WriteString(w, "d"); err != http.ErrContentLength {
				panic("a write past Content-Length: " + fmt.Sprint(err))
			}
		}, func(t *testing.T, resp *http.Response, body string) {
			if resp.ContentLength != 3 || body != "abc" {
				t.Fatalf("length %d, body %q", resp.ContentLength, body)
			}
		}},
		{"HEAD keeps the length and sends no body", "HEAD", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "42")
			io.WriteString(w, "ignored")
		}, func(t *testing.T, resp *http.Response, body string) {
			if resp.ContentLength != 42 || body != "" {
				t.Fatalf("length %d, body %q", resp.ContentLength, body)
			}
		}},
		{"204 has no body", "GET", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(204)
			if _, err := io.WriteString(w, "x"); err != http.ErrBodyNotAllowed {
				panic("a body on a 204: " + fmt.Sprint(err))
			}
		}, func(t *testing.T, resp *http.Response, body string) {
			if resp.StatusCode != 204 || body != "" || resp.Header.Get("Content-Length") != "" {
				t.Fatalf("%d, header %v, body %q", resp.StatusCode, resp.Header, body)
			}
		}},
		{"1xx before the final status", "GET", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Link", "</a>")
			w.WriteHeader(http.StatusEarlyHints)
			w.WriteHeader(200)
			io.WriteString(w, "ok")
		}, func(t *testing.T, resp *http.Response, body string) {
			if resp.StatusCode != 200 || body != "ok" {
				t.Fatalf("%d %q", resp.StatusCode, body)
			}
		}},
		{"a header value cannot add a field", "GET", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-A", "1\r\nX-Injected: 2")
		}, func(t *testing.T, resp *http.Response, body string) {
			if resp.Header.Get("X-Injected") != "" {
				t.Fatalf("header %v", resp.Header)
			}
		}},
		{"Date is set", "GET", func(w http.ResponseWriter, r *http.Request) {},
			func(t *testing.T, resp *http.Response, body string) {
				if _, err := http.ParseTime(resp.Header.Get("Date")); err != nil || resp.ContentLength != 0 {
					t.Fatalf("Date %q, length %d", resp.Header.Get("Date"), resp.ContentLength)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, &Server{Handler: tc.handler})
			c, br := ts.dial(t)
			for i := range 2 { // the second proves the framing left the connection usable
				resp := exchange(t, c, br, tc.method+" / HTTP/1.1\r\nHost: a\r\n\r\n", tc.method)
				tc.check(t, resp, readBody(t, resp))
				if resp.Close {
					t.Fatalf("request %d: connection closed", i)
				}
			}
		})
	}
}

func TestServerExpectContinue(t *testing.T) {
	ts := startServer(t, &Server{Handler: http.HandlerFunc(echoHandler)})
	c, br := ts.dial(t)
	io.WriteString(c, "POST /e HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
	resp := exchange(t, c, br, "", "POST")
	if resp.StatusCode != 100 {
		t.Fatalf("first response %d, want 100 Continue", resp.StatusCode)
	}
	resp = exchange(t, c, br, "body", "POST")
	if got := readBody(t, resp); resp.StatusCode != 200 || got != "POST a /e body" || resp.Close {
		t.Fatalf("%d %q close %v", resp.StatusCode, got, resp.Close)
	}
}

// TestServerPipelined: requests sent back to back are answered in order.
func TestServerPipelined(t *testing.T) {
	ts := startServer(t, &Server{Handler: http.HandlerFunc(echoHandler)})
	c, br := ts.dial(t)
	io.WriteString(c, "POST /1 HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx"+
		"POST /2 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\ny\r\n0\r\n\r\n"+
		"GET /3 HTTP/1.1\r\nHost: a\r\n\r\n")
	for _, want := range []string{"POST a /1 x", "POST a /2 y", "GET a /3 "} {
		if got := readBody(t, exchange(t, c, br, "", "GET")); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
}

// TestServerHijack: an upgrade takes the connection, bytes already read
// included.
func TestServerHijack(t *testing.T) {
	ts := startServer(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			panic(err)
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		line, _ := brw.ReadString('\n')
		brw.WriteString("echo: " + line)
		brw.Flush()
	})})
	c, br := ts.dial(t)
	// The first line after the request comes in the same write: it is in
	// the server's buffer when the handler hijacks.
	resp := exchange(t, c, br, "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nhello\n", "GET")
	if resp.StatusCode != 101 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if line, err := br.ReadString('\n'); line != "echo: hello\n" {
		t.Fatalf("after the upgrade: %q %v", line, err)
	}
}

// TestServerH2Preface: a connection that opens with the HTTP/2 preface
// goes to Fallback, with the bytes read so far.
func TestServerH2Preface(t *testing.T) {
	got := make(chan string, 1)
	ts := startServer(t, &Server{
		Handler: http.HandlerFunc(echoHandler),
		Fallback: func(c net.Conn, early []byte) {
			defer c.Close()
			all := make([]byte, len(h2Preface)+3)
			io.ReadFull(io.MultiReader(bytes.NewReader(early), c), all)
			got <- string(all)
		},
	})
	c, _ := ts.dial(t)
	io.WriteString(c, h2Preface+"abc")
	select {
	case s := <-got:
		if s != h2Preface+"abc" {
			t.Fatalf("Fallback read %q", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Fallback not called")
	}
	// Without Fallback: 505.
	ts = startServer(t, &Server{Handler: http.HandlerFunc(echoHandler)})
	c, br := ts.dial(t)
	if resp := exchange(t, c, br, h2Preface, "GET"); resp.StatusCode != 505 {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

// TestServerClientGone: a request still running after WatchAfter has its
// context cancelled when the client closes the connection; one that ends
// sooner is not watched at all.
func TestServerClientGone(t *testing.T) {
	cancelled := make(chan error, 1)
	ts := startServer(t, &Server{
		WatchAfter: 10 * time.Millisecond,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
				cancelled <- r.Context().Err()
			case <-time.After(10 * time.Second):
				cancelled <- nil
			}
		}),
	})
	c, _ := ts.dial(t)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	time.Sleep(50 * time.Millisecond)
	c.Close()
	if err := <-cancelled; err != context.Canceled {
		t.Fatalf("request context: %v, want cancelled", err)
	}
}

// TestServerWatchKeepsPipelinedBytes: the watch reads the client's next
// request while the handler runs; that request is still served.
func TestServerWatchKeepsPipelinedBytes(t *testing.T) {
	ts := startServer(t, &Server{
		WatchAfter: time.Millisecond,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/slow" {
				time.Sleep(100 * time.Millisecond)
			}
			echoHandler(w, r)
		}),
	})
	c, br := ts.dial(t)
	io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
	time.Sleep(30 * time.Millisecond) // the watch is reading by now
	io.WriteString(c, "GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
	for _, want := range []string{"GET a /slow ", "GET a /next "} {
		if got := readBody(t, exchange(t, c, br, "", "GET")); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
}

// TestServerShutdown: an idle connection is closed at once, a request in
// flight finishes with Connection: close, and Shutdown returns after it.
func TestServerShutdown(t *testing.T) {
	arrived, release := make(chan struct{}), make(chan struct{})
	s := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(arrived)
			<-release
		}
		io.WriteString(w, "done")
	})}
	ts := startServer(t, s)
	idle, idleBR := ts.dial(t)
	readBody(t, exchange(t, idle, idleBR, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", "GET"))
	busy, busyBR := ts.dial(t)
	io.WriteString(busy, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
	<-arrived
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	if _, err := idleBR.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection: %v, want EOF", err)
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	resp := exchange(t, busy, busyBR, "", "GET")
	if got := readBody(t, resp); got != "done" || !resp.Close {
		t.Fatalf("in-flight request: %q, close %v", got, resp.Close)
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
	if c, err := net.Dial("tcp", ts.ln.Addr().String()); err == nil {
		// The test's accept loop still accepts: the server must not serve.
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
		if n, _ := c.Read(make([]byte, 1)); n != 0 {
			t.Fatal("a connection after Shutdown was served")
		}
		c.Close()
	}
}

// TestServerHandlerPanics: a panicking handler costs its connection, not
// the server; ReverseProxy's ErrAbortHandler likewise.
func TestServerHandlerPanics(t *testing.T) {
	for _, v := range []any{"boom", http.ErrAbortHandler} {
		ts := startServer(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/panic" {
				io.WriteString(w, "partial")
				panic(v)
			}
			echoHandler(w, r)
		})})
		c, br := ts.dial(t)
		io.WriteString(c, "GET /panic HTTP/1.1\r\nHost: a\r\n\r\n")
		if _, err := http.ReadResponse(br, nil); err == nil {
			t.Fatalf("%v: a response after the panic", v)
		}
		c, br = ts.dial(t)
		if got := readBody(t, exchange(t, c, br, "GET /x HTTP/1.1\r\nHost: a\r\n\r\n", "GET")); got != "GET a /x " {
			t.Fatalf("%v: after the panic: %q", v, got)
		}
	}
}

// TestServerTimeouts: a client that sends half a request, or nothing, is
// cut off at ReadHeaderTimeout; an idle kept-alive one at IdleTimeout.
func TestServerTimeouts(t *testing.T) {
	for _, tc := range []struct{ name, raw string }{
		{"silent", ""},
		{"half a request", "GET / HTTP/1.1\r\nHost: a\r\n"},
		{"idle after a request", "GET / HTTP/1.1\r\nHost: a\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, &Server{
				Handler:           http.HandlerFunc(echoHandler),
				ReadHeaderTimeout: 100 * time.Millisecond,
				IdleTimeout:       200 * time.Millisecond,
			})
			c, br := ts.dial(t)
			io.WriteString(c, tc.raw)
			start := time.Now()
			io.Copy(io.Discard, br)
			if d := time.Since(start); d > 3*time.Second {
				t.Fatalf("connection held for %v", d)
			}
		})
	}
}

// TestServerCloseCancelsRequests: Close ends a request stuck in its
// handler through its context, at once (no watch to wait for).
func TestServerCloseCancelsRequests(t *testing.T) {
	arrived, cancelled := make(chan struct{}), make(chan struct{})
	s := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-r.Context().Done()
		close(cancelled)
	})}
	ts := startServer(t, s)
	c, _ := ts.dial(t)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	<-arrived
	s.Close()
	select {
	case <-cancelled:
	case <-time.After(500 * time.Millisecond):
		t.Fatal("the request's context was not cancelled by Close")
	}
}

// TestServerDeadlinesSpareRequests: the header and idle deadlines bound
// waiting for a request, not the request: a body sent slowly is read in
// full, and a long request's watch does not take an old deadline for the
// client going away.
func TestServerDeadlinesSpareRequests(t *testing.T) {
	s := &Server{
		ReadHeaderTimeout: 50 * time.Millisecond,
		IdleTimeout:       80 * time.Millisecond,
		WatchAfter:        5 * time.Millisecond,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/long" {
				select {
				case <-time.After(300 * time.Millisecond):
				case <-r.Context().Done():
					http.Error(w, "cancelled", 500)
					return
				}
			}
			echoHandler(w, r)
		}),
	}
	ts := startServer(t, s)
	c, br := ts.dial(t)
	// The first request of a connection and a later one: the deadline in
	// force differs (header, then idle).
	for i := range 2 {
		io.WriteString(c, "POST /slow HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nab")
		time.Sleep(150 * time.Millisecond)
		io.WriteString(c, "cd")
		if got := readBody(t, exchange(t, c, br, "", "POST")); got != "POST a /slow abcd" {
			t.Fatalf("slow body %d: %q", i, got)
		}
		resp := exchange(t, c, br, "GET /long HTTP/1.1\r\nHost: a\r\n\r\n", "GET")
		if got := readBody(t, resp); resp.StatusCode != 200 || got != "GET a /long " {
			t.Fatalf("long request %d: %d %q", i, resp.StatusCode, got)
		}
	}
}

// TestServerIdleConnectionHoldsNoWriter: between requests a kept-alive
// connection gives its writer back to the pool; the next request takes
// one again.
func TestServerIdleConnectionHoldsNoWriter(t *testing.T) {
	ts := startServer(t, &Server{Handler: http.HandlerFunc(echoHandler)})
	c, br := ts.dial(t)
	for i := range 2 {
		resp := exchange(t, c, br, "GET /a HTTP/1.1\r\nHost: example\r\n\r\n", "GET")
		if got := readBody(t, resp); got != "GET example /a " {
			t.Fatalf("request %d: %q", i, got)
		}
		// Wait for the connection to be idle again, then look at it.
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
			ts.s.mu.Lock()
			var idle, holds bool
			for sc := range ts.s.conns {
				sc.mu.Lock()
				idle, holds = sc.state == stateIdle, sc.bw != nil
				sc.mu.Unlock()
			}
			ts.s.mu.Unlock()
			if idle {
				if holds {
					t.Fatalf("after request %d the idle connection still holds its writer", i)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the connection did not go idle")
			}
		}
	}
}
