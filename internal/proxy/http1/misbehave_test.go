package http1

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Apps that close idle keep-alive connections: the request that finds
// the connection closed is sent again on a new one if it may be, and a
// request that may not be is kept off connections known to be closed.
func TestStaleConnections(t *testing.T) {
	tests := []struct {
		name string
		// Closed while idle: the app closes the connection after the
		// first response (else it reads the second request, then closes
		// without answering: the close crosses the request).
		closedWhileIdle bool
		method          string
		body            string
		header          string // set to "1"
		wantOK          bool
		wantConns       int32
		wantRequests    int32 // the app read, second request included
	}{
		{name: "GET is retried", closedWhileIdle: false, method: "GET", wantOK: true, wantConns: 2, wantRequests: 3},
		{name: "HEAD is retried", closedWhileIdle: false, method: "HEAD", wantOK: true, wantConns: 2, wantRequests: 3},
		{name: "POST with an Idempotency-Key is retried", closedWhileIdle: false, method: "POST", header: "Idempotency-Key", wantOK: true, wantConns: 2, wantRequests: 3},
		{name: "POST is not retried", closedWhileIdle: false, method: "POST", body: "once", wantOK: false, wantConns: 1, wantRequests: 2},
		{name: "DELETE is not retried", closedWhileIdle: false, method: "DELETE", wantOK: false, wantConns: 1, wantRequests: 2},
		{name: "GET finds the idle connection closed", closedWhileIdle: true, method: "GET", wantOK: true, wantConns: 2, wantRequests: 2},
		{name: "POST is not sent on a connection closed while idle", closedWhileIdle: true, method: "POST", body: "once", wantOK: true, wantConns: 2, wantRequests: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			closed := make(chan struct{})
			s := newRawServer(t, func(s *rawServer, n int, c net.Conn, br *bufio.Reader) {
				if n > 0 {
					keepAlive(s, n, c, br)
					return
				}
				if _, ok := s.readRequest(br); !ok {
					return
				}
				io.WriteString(c, okResponse)
				if tt.closedWhileIdle {
					c.Close()
					close(closed)
					return
				}
				s.readRequest(br) // and close without answering
			})
			tr := newTransport(t, s.addr(), &fallback{}, nil)
			if _, _, err := do(t, tr, get(t, "http://app/")); err != nil {
				t.Fatal(err)
			}
			if tt.closedWhileIdle {
				<-closed
				time.Sleep(10 * time.Millisecond) // for the FIN to arrive
			}
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			}
			req := newRequest(t, context.Background(), tt.method, "http://app/", body)
			if tt.body != "" {
				req.GetBody = nil // as a server's request: cannot be rewound
			}
			if tt.header != "" {
				req.Header.Set(tt.header, "1")
			}
			_, _, err := do(t, tr, req)
			if (err == nil) != tt.wantOK {
				t.Errorf("err = %v, want ok %v", err, tt.wantOK)
			}
			if n := s.conns.Load(); n != tt.wantConns {
				t.Errorf("%d connections, want %d", n, tt.wantConns)
			}
			if n := s.requests.Load(); n != tt.wantRequests {
				t.Errorf("app read %d requests, want %d", n, tt.wantRequests)
			}
		})
	}
}

// A request whose body can be had again (GetBody) is retried with it, if
// the caller says it is idempotent.
func TestStaleRetryRewindsBody(t *testing.T) {
	bodies := make(chan string, 4)
	s := newRawServer(t, func(s *rawServer, n int, c net.Conn, br *bufio.Reader) {
		for i := 0; ; i++ {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			b, _ := io.ReadAll(req.Body)
			bodies <- string(b)
			if n == 0 && i == 1 {
				return // close instead of answering the second request
			}
			io.WriteString(c, okResponse)
		}
	})
	tr := newTransport(t, s.addr(), &fallback{}, nil)
	for range 2 {
		req := newRequest(t, context.Background(), "POST", "http://app/", strings.NewReader("same"))
		req.Header.Set("X-Idempotency-Key", "k")
		if _, _, err := do(t, tr, req); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for range 3 {
		got = append(got, <-bodies)
	}
	if strings.Join(got, ",") != "same,same,same" {
		t.Errorf("app got bodies %q", got)
	}
}

// Apps that answer what is not HTTP, or too much of it.
func TestBadResponses(t *testing.T) {
	tests := []struct {
		name     string
		response string
		wantErr  string
	}{
		{"garbage", "SSH-2.0-OpenSSH_9.6\r\n\r\n", "malformed HTTP"},
		{"header over the limit", "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("a", 8<<10) + "\r\n\r\n", "exceeded 4096 bytes"},
		{"1xx over the header limit", strings.Repeat("HTTP/1.1 102 Processing\r\nX-Pad: "+strings.Repeat("p", 500)+"\r\n\r\n", 20), "exceeded 4096 bytes"},
		{"101 to a request for no upgrade", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", "101"},
		{"bad Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\n", "Content-Length"},
		{"closed before the header ends", "HTTP/1.1 200 OK\r\nContent-Le", "malformed MIME header"},
		{"closed without a byte", "", "EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newRawServer(t, func(s *rawServer, n int, c net.Conn, br *bufio.Reader) {
				if _, ok := s.readRequest(br); ok {
					io.WriteString(c, tt.response)
				}
			})
			tr := newTransport(t, s.addr(), &fallback{}, func(c *Config) { c.MaxResponseHeaderBytes = 4096 })
			_, _, err := do(t, tr, get(t, "http://app/"))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("err = %v, want one with %q", err, tt.wantErr)
			}
			if n := tr.idleCount(); n != 0 {
				t.Errorf("%d idle connections after a failure", n)
			}
			if n := s.requests.Load(); n != 1 {
				t.Errorf("app read %d requests, want 1 (a fresh connection is not retried)", n)
			}
		})
	}
}

// Informational responses are skipped, and bounded when the caller takes
// them.
func TestInformationalResponses(t *testing.T) {
	info := "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
	tests := []struct {
		name     string
		response string
		want     string // codes the hook saw, then the status or the error
	}{
		{"skipped", info + okResponse, "[100 103] 200"},
		{"too many", strings.Repeat("HTTP/1.1 103 Early Hints\r\n\r\n", max1xx+1) + okResponse, "[" + strings.TrimSpace(strings.Repeat("103 ", max1xx)) + "] more than 32 informational responses"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newRawServer(t, func(s *rawServer, n int, c net.Conn, br *bufio.Reader) {
				if _, ok := s.readRequest(br); ok {
					io.WriteString(c, tt.response)
					waitEOF(c, br, 5*time.Second)
				}
			})
			tr := newTransport(t, s.addr(), &fallback{}, nil)
			var codes []string
			ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
				Got1xxResponse: func(code int, _ textproto.MIMEHeader) error {
					codes = append(codes, strconv.Itoa(code))
					return nil
				},
			})
			resp, _, err := do(t, tr, newRequest(t, ctx, "GET", "http://app/", nil))
			got := "[" + strings.Join(codes, " ") + "] "
			if err != nil {
				_, msg, _ := strings.Cut(err.Error(), s.addr()+": ")
				got += msg
			} else {
				got += strconv.Itoa(resp.StatusCode)
			}
			if got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

// Responses after which the connection must not be reused.
func TestConnectionNotReused(t *testing.T) {
	tests := []struct {
		name     string
		response string
		body     string
	}{
		{"HTTP/1.0 without keep-alive", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", "ok"},
		{"body delimited by the close", "HTTP/1.1 200 OK\r\n\r\nuntil the end", "until the end"},
		{"bytes after the response", okResponse + "HTTP/1.1 200 OK\r\n", "ok"},
		{"Connection: close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", "ok"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newRawServer(t, func(s *rawServer, n int, c net.Conn, br *bufio.Reader) {
				if _, ok := s.readRequest(br); !ok {
					return
				}
				io.WriteString(c, tt.response)
				if !strings.Contains(tt.name, "close") {
					time.Sleep(20 * time.Millisecond) // the extra bytes arrive with the response
				}
			})
			tr := newTransport(t, s.addr(), &fallback{}, nil)
			for i := range 2 {
				if _, body, err := do(t, tr, get(t, "http://app/")); err != nil || body != tt.body {
					t.Fatalf("request %d: %q %v", i, body, err)
				}
			}
			if n := s.conns.Load(); n != 2 {
				t.Errorf("%d connections for 2 requests, want 2", n)
			}
		})
	}
}

// An app that answers before reading the request body, and neither reads
// it nor closes: the body (within MaxBodyBytes) fits in the sockets'
// buffers, so the answer is read rather than the write blocking.
func TestEarlyAnswerToLargeBody(t *testing.T) {
	done := make(chan struct{})
	s := newRawServer(t, func(s *rawServer, n int, c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 413 Request Entity Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
		<-done // neither read nor close
	})
	defer close(done)
	tr := newTransport(t, s.addr(), &fallback{}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := newRequest(t, ctx, "POST", "http://app/", strings.NewReader(strings.Repeat("x", DefaultMaxBodyBytes)))
	resp, _, err := do(t, tr, req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 413 {
		t.Errorf("status %d", resp.StatusCode)
	}
}

// The request's context ending aborts the exchange at once, wherever it
// is, and the connection is closed.
func TestCancellation(t *testing.T) {
	tests := []struct {
		name string
		// response is sent after the request is read; then the app hangs.
		response string
		cancelIn time.Duration
		// readBody: the cancel comes while reading the body.
		readBody bool
	}{
		{"waiting for the header", "", 20 * time.Millisecond, false},
		{"waiting in the header", "HTTP/1.1 200 OK\r\nX-Slow: ", 20 * time.Millisecond, false},
		{"reading a body that stalls", "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nfirst bytes", 20 * time.Millisecond, true},
		{"reading a chunked body that stalls", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n", 20 * time.Millisecond, true},
		{"already canceled", "", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newRawServer(t, func(s *rawServer, n int, c net.Conn, br *bufio.Reader) {
				if _, ok := s.readRequest(br); !ok {
					return
				}
				io.WriteString(c, tt.response)
				if waitEOF(c, br, 10*time.Second) {
					s.closed <- n
				}
			})
			tr := newTransport(t, s.addr(), &fallback{}, nil)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.cancelIn == 0 {
				cancel()
			} else {
				time.AfterFunc(tt.cancelIn, cancel)
			}
			start := time.Now()
			resp, err := tr.RoundTrip(newRequest(t, ctx, "GET", "http://app/", nil))
			if tt.readBody {
				if err != nil {
					t.Fatal(err)
				}
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			if !errors.Is(err, context.Canceled) {
				t.Errorf("err = %v, want context.Canceled", err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("aborted after %v", d)
			}
			if tt.cancelIn == 0 {
				if n := s.conns.Load(); n != 0 {
					t.Errorf("%d connections for a canceled request", n)
				}
				return
			}
			select {
			case <-s.closed:
			case <-time.After(5 * time.Second):
				t.Error("connection not closed")
			}
			if n := tr.idleCount(); n != 0 {
				t.Errorf("%d idle connections", n)
			}
		})
	}
}

// A body closed before EOF closes its connection, also from another
// goroutine while a Read is blocked.
func TestBodyClosedEarly(t *testing.T) {
	for _, concurrent := range []bool{false, true} {
		name := map[bool]string{false: "after a read", true: "during a read"}[concurrent]
		t.Run(name, func(t *testing.T) {
			s := newRawServer(t, func(s *rawServer, n int, c net.Conn, br *bufio.Reader) {
				if _, ok := s.readRequest(br); !ok {
					return
				}
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nstart")
				if waitEOF(c, br, 10*time.Second) {
					s.closed <- n
				}
			})
			tr := newTransport(t, s.addr(), &fallback{}, nil)
			resp, err := tr.RoundTrip(get(t, "http://app/"))
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 5)
			if _, err := io.ReadFull(resp.Body, buf); err != nil {
				t.Fatal(err)
			}
			if concurrent {
				time.AfterFunc(20*time.Millisecond, func() { resp.Body.Close() })
				if _, err := resp.Body.Read(buf); err == nil {
					t.Error("read went on after Close")
				}
			}
			resp.Body.Close()
			if _, err := resp.Body.Read(buf); err == nil {
				t.Error("read after Close succeeded")
			}
			select {
			case <-s.closed:
			case <-time.After(5 * time.Second):
				t.Error("connection not closed")
			}
			if n := tr.idleCount(); n != 0 {
				t.Errorf("%d idle connections", n)
			}
		})
	}
}

func TestDialFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	tr := newTransport(t, addr, &fallback{}, nil)
	body := &closeCounter{Reader: strings.NewReader("x")}
	req := newRequest(t, context.Background(), "POST", "http://app/", body)
	req.ContentLength = 1
	if _, err := tr.RoundTrip(req); err == nil {
		t.Fatal("no error")
	}
	if body.closed != 1 {
		t.Errorf("request body closed %d times, want 1", body.closed)
	}
}

type closeCounter struct {
	io.Reader
	closed int
}

func (c *closeCounter) Close() error { c.closed++; return nil }
