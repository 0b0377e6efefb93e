package http1

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// captureServer answers every request with okResponse and sends the raw
// bytes of each request (header and body) on the returned channel.
func captureServer(t *testing.T) (*rawServer, <-chan string) {
	got := make(chan string, 16)
	s := newRawServer(t, func(s *rawServer, _ int, c net.Conn, _ *bufio.Reader) {
		var raw bytes.Buffer
		br := bufio.NewReader(io.TeeReader(c, &raw))
		for {
			// The client sends nothing more before the answer, so what
			// was read is exactly one request.
			req, ok := s.readRequest(br)
			if !ok {
				return
			}
			got <- raw.String()
			raw.Reset()
			resp := okResponse
			if req.Method == "HEAD" {
				resp = strings.TrimSuffix(resp, "ok")
			}
			if _, err := io.WriteString(c, resp); err != nil {
				return
			}
		}
	})
	return s, got
}

func TestWritesWhatHTTPTransportWrites(t *testing.T) {
	tests := []struct {
		name string
		req  func(url string) *http.Request
	}{
		{"GET with query and headers", func(url string) *http.Request {
			r := get(t, url+"/a/b?q=1&r=%2F")
			r.Header.Set("X-One", "1")
			r.Header.Add("X-Many", "a")
			r.Header.Add("X-Many", "b")
			return r
		}},
		{"HEAD", func(url string) *http.Request { return newRequest(t, context.Background(), "HEAD", url+"/h", nil) }},
		{"POST with a small body", func(url string) *http.Request {
			return newRequest(t, context.Background(), "POST", url+"/p", strings.NewReader("hello body"))
		}},
		{"PUT with a body that cannot be rewound", func(url string) *http.Request {
			r := newRequest(t, context.Background(), "PUT", url+"/p", io.NopCloser(strings.NewReader("12345")))
			r.ContentLength = 5
			return r
		}},
		{"Host other than the URL's", func(url string) *http.Request {
			r := get(t, url+"/")
			r.Host = "backend.api.svc.cluster.local"
			return r
		}},
		{"Close asks for Connection: close", func(url string) *http.Request {
			r := get(t, url+"/")
			r.Close = true
			return r
		}},
		{"empty User-Agent, as ReverseProxy sets it", func(url string) *http.Request {
			r := get(t, url+"/")
			r.Header.Set("User-Agent", "")
			return r
		}},
		{"escaped path", func(url string) *http.Request {
			r := get(t, url+"/x%2Fy/z")
			return r
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, got := captureServer(t)
			url := "http://" + s.addr()
			ref := &http.Transport{DisableCompression: true}
			defer ref.CloseIdleConnections()
			if _, _, err := do(t, ref, tt.req(url)); err != nil {
				t.Fatal(err)
			}
			want := <-got
			tr := newTransport(t, s.addr(), &fallback{}, nil)
			resp, body, err := do(t, tr, tt.req(url))
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != 200 || (body != "ok" && resp.Request.Method != "HEAD") {
				t.Fatalf("response %d %q", resp.StatusCode, body)
			}
			if g := <-got; g != want {
				t.Errorf("sent\n%q\nhttp.Transport sends\n%q", g, want)
			}
		})
	}
}

func TestResponses(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/chunked", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum")
		w.Write([]byte("part1,"))
		w.(http.Flusher).Flush()
		w.Write([]byte("part2"))
		w.Header().Set("X-Sum", "42")
	})
	mux.HandleFunc("/204", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	mux.HandleFunc("/304", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(304) })
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		w.Write(bytes.Repeat([]byte("z"), 1<<20))
	})
	mux.HandleFunc("/head", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1234")
	})
	mux.HandleFunc("/early-hints", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		io.WriteString(w, "final")
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s", r.Method, r.Host, b)
	})
	mux.HandleFunc("/close", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		io.WriteString(w, "bye")
	})
	srv, conns := countingServer(t, mux)
	tr := newTransport(t, srv.Listener.Addr().String(), &fallback{}, nil)

	tests := []struct {
		name       string
		method     string
		path       string
		body       string
		wantCode   int
		wantBody   string
		wantTrail  string // X-Sum trailer
		wantLength int64
		want1xx    []int
		dials      bool // a new connection for this one
		newConn    bool // the connection is not reused after this
	}{
		{name: "chunked with trailer", method: "GET", path: "/chunked", wantCode: 200, wantBody: "part1,part2", wantTrail: "42", wantLength: -1, dials: true},
		{name: "204 has no body", method: "GET", path: "/204", wantCode: 204},
		{name: "304 has no body", method: "GET", path: "/304", wantCode: 304},
		{name: "HEAD has no body", method: "HEAD", path: "/head", wantCode: 200, wantLength: 1234},
		{name: "large body", method: "GET", path: "/big", wantCode: 200, wantBody: strings.Repeat("z", 1<<20), wantLength: -1},
		{name: "103 before the response goes to the trace hook", method: "GET", path: "/early-hints", wantCode: 200, wantBody: "final", wantLength: 5, want1xx: []int{103}},
		{name: "POST body", method: "POST", path: "/echo", body: "payload", wantCode: 200, wantBody: "POST example.test payload", wantLength: 25},
		{name: "Connection: close from the app", method: "GET", path: "/close", wantCode: 200, wantBody: "bye", wantLength: 3, newConn: true},
		{name: "after close, a new connection", method: "GET", path: "/echo", wantCode: 200, wantBody: "GET example.test ", wantLength: 17, dials: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got1xx []int
			ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
				Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
					got1xx = append(got1xx, code)
					return nil
				},
			})
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			}
			req := newRequest(t, ctx, tt.method, "http://example.test"+tt.path, body)
			before := conns.Load()
			resp, b, err := do(t, tr, req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.wantCode || b != tt.wantBody {
				t.Errorf("got %d %.40q, want %d %.40q", resp.StatusCode, b, tt.wantCode, tt.wantBody)
			}
			if resp.ContentLength != tt.wantLength {
				t.Errorf("ContentLength %d, want %d", resp.ContentLength, tt.wantLength)
			}
			if g := resp.Trailer.Get("X-Sum"); g != tt.wantTrail {
				t.Errorf("trailer %q, want %q", g, tt.wantTrail)
			}
			if fmt.Sprint(got1xx) != fmt.Sprint(tt.want1xx) {
				t.Errorf("1xx %v, want %v", got1xx, tt.want1xx)
			}
			if c := conns.Load() - before; c > 1 || (c == 1) != tt.dials {
				t.Errorf("%d new connections", c)
			}
			if idle := tr.idleCount(); (idle == 0) != tt.newConn {
				t.Errorf("%d idle connections after the exchange", idle)
			}
		})
	}
}

func TestFallback(t *testing.T) {
	s := newRawServer(t, keepAlive)
	big := strings.Repeat("b", DefaultMaxBodyBytes+1)
	tests := []struct {
		name     string
		req      func() *http.Request
		fallback bool
	}{
		{"GET", func() *http.Request { return get(t, "http://app/") }, false},
		{"small known body", func() *http.Request {
			return newRequest(t, context.Background(), "POST", "http://app/", strings.NewReader("x"))
		}, false},
		{"body of the largest fast size", func() *http.Request {
			return newRequest(t, context.Background(), "POST", "http://app/", strings.NewReader(big[1:]))
		}, false},
		{"CONNECT", func() *http.Request { return newRequest(t, context.Background(), "CONNECT", "http://app/", nil) }, true},
		{"websocket upgrade (the server here declines it)", func() *http.Request {
			r := get(t, "http://app/ws")
			r.Header.Set("Connection", "Upgrade")
			r.Header.Set("Upgrade", "websocket")
			return r
		}, false},
		{"upgrade with a body", func() *http.Request {
			r := newRequest(t, context.Background(), "POST", "http://app/ws", strings.NewReader("x"))
			r.Header.Set("Connection", "Upgrade")
			r.Header.Set("Upgrade", "websocket")
			return r
		}, true},
		{"Expect: 100-continue", func() *http.Request {
			r := newRequest(t, context.Background(), "POST", "http://app/", strings.NewReader("x"))
			r.Header.Set("Expect", "100-continue")
			return r
		}, true},
		{"body of unknown length", func() *http.Request {
			r := newRequest(t, context.Background(), "POST", "http://app/", io.NopCloser(strings.NewReader("x")))
			r.ContentLength = -1
			return r
		}, true},
		{"body said to be empty", func() *http.Request {
			r := newRequest(t, context.Background(), "POST", "http://app/", io.NopCloser(strings.NewReader("x")))
			r.ContentLength = 0
			return r
		}, true},
		{"body over MaxBodyBytes", func() *http.Request {
			return newRequest(t, context.Background(), "POST", "http://app/", strings.NewReader(big))
		}, true},
		{"chunked request", func() *http.Request {
			r := newRequest(t, context.Background(), "POST", "http://app/", strings.NewReader("x"))
			r.TransferEncoding = []string{"chunked"}
			return r
		}, true},
		{"request trailers", func() *http.Request {
			r := newRequest(t, context.Background(), "POST", "http://app/", strings.NewReader("x"))
			r.Trailer = http.Header{"X-T": nil}
			return r
		}, true},
		{"https", func() *http.Request { return get(t, "https://app/") }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fb := &fallback{}
			tr := newTransport(t, s.addr(), fb, nil)
			resp, _, err := do(t, tr, tt.req())
			if err != nil {
				t.Fatal(err)
			}
			if got := fb.calls.Load() == 1; got != tt.fallback || (resp.StatusCode == 299) != tt.fallback {
				t.Errorf("fallback %v (status %d), want %v", got, resp.StatusCode, tt.fallback)
			}
		})
	}
}

func TestReusesOneConnectionSerially(t *testing.T) {
	srv, conns := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	tr := newTransport(t, srv.Listener.Addr().String(), nil, nil)
	for i := range 20 {
		if _, body, err := do(t, tr, get(t, srv.URL)); err != nil || body != "ok" {
			t.Fatalf("request %d: %q %v", i, body, err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections for 20 serial requests", n)
	}
}

func TestConcurrentRequestsStayWithinPool(t *testing.T) {
	srv, conns := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	}))
	const maxIdle = 4
	tr := newTransport(t, srv.Listener.Addr().String(), nil, func(c *Config) { c.MaxIdleConns = maxIdle })
	var wg sync.WaitGroup
	errs := make(chan error, 16*50)
	for g := range 16 {
		wg.Go(func() {
			for i := range 50 {
				msg := fmt.Sprintf("g%d-%d", g, i)
				method := "GET"
				var body io.Reader
				if i%2 == 1 {
					method, body = "POST", strings.NewReader(msg)
				}
				_, got, err := do(t, tr, newRequest(t, context.Background(), method, srv.URL, body))
				if err != nil || (body != nil && got != msg) {
					errs <- fmt.Errorf("%s: %q %v", msg, got, err)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := tr.idleCount(); n > maxIdle {
		t.Errorf("%d idle connections, want at most %d", n, maxIdle)
	}
	t.Logf("%d connections for 800 requests from 16 goroutines", conns.Load())
}

func TestIdleTimeout(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }

	s := newRawServer(t, keepAliveThenReport)
	tr := newTransport(t, s.addr(), &fallback{}, func(c *Config) {
		c.IdleTimeout = time.Hour // the sweep never fires in this test
		c.Now = clock
	})
	if _, _, err := do(t, tr, get(t, "http://app/")); err != nil {
		t.Fatal(err)
	}
	advance(59 * time.Minute)
	if _, _, err := do(t, tr, get(t, "http://app/")); err != nil {
		t.Fatal(err)
	}
	if n := s.conns.Load(); n != 1 {
		t.Fatalf("%d connections before the timeout, want 1", n)
	}
	advance(time.Hour)
	if _, _, err := do(t, tr, get(t, "http://app/")); err != nil {
		t.Fatal(err)
	}
	if n := s.conns.Load(); n != 2 {
		t.Errorf("%d connections after the timeout, want 2", n)
	}
	select {
	case n := <-s.closed:
		if n != 0 {
			t.Errorf("connection %d closed, want the idle one", n)
		}
	case <-time.After(5 * time.Second):
		t.Error("the expired connection was not closed")
	}
}

func TestIdleConnectionsCloseWithoutTraffic(t *testing.T) {
	s := newRawServer(t, keepAliveThenReport)
	tr := newTransport(t, s.addr(), &fallback{}, func(c *Config) { c.IdleTimeout = 20 * time.Millisecond })
	if _, _, err := do(t, tr, get(t, "http://app/")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("idle connection still open")
	}
	// The pool works after a sweep emptied it.
	if _, _, err := do(t, tr, get(t, "http://app/")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("second idle connection still open")
	}
}

func TestCloseIdleConnections(t *testing.T) {
	s := newRawServer(t, keepAliveThenReport)
	fb := &fallback{}
	tr := newTransport(t, s.addr(), fb, nil)
	if _, _, err := do(t, tr, get(t, "http://app/")); err != nil {
		t.Fatal(err)
	}
	tr.CloseIdleConnections()
	select {
	case <-s.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("idle connection still open")
	}
	if fb.closeIdle.Load() != 1 {
		t.Error("fallback's idle connections not closed")
	}
	if _, _, err := do(t, tr, get(t, "http://app/")); err != nil {
		t.Fatal(err)
	}
}

func TestMaxIdleConnsClosesTheSurplus(t *testing.T) {
	release := make(chan struct{})
	var arrived sync.WaitGroup
	arrived.Add(2)
	s := newRawServer(t, func(s *rawServer, n int, c net.Conn, br *bufio.Reader) {
		if _, ok := s.readRequest(br); !ok {
			return
		}
		arrived.Done()
		<-release
		io.WriteString(c, okResponse)
		if !waitEOF(c, br, 5*time.Second) {
			return
		}
		s.closed <- n
	})
	tr := newTransport(t, s.addr(), &fallback{}, func(c *Config) { c.MaxIdleConns = 1 })
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if _, _, err := do(t, tr, get(t, "http://app/")); err != nil {
				t.Error(err)
			}
		})
	}
	arrived.Wait()
	close(release)
	wg.Wait()
	select {
	case <-s.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("surplus connection not closed")
	}
	if n := tr.idleCount(); n != 1 {
		t.Errorf("%d idle, want 1", n)
	}
}

// MaxRequestsPerConn closes a connection after its Nth exchange, so ten
// serial requests take ceil(10/N) connections.
func TestMaxRequestsPerConn(t *testing.T) {
	tests := []struct {
		name      string
		perConn   int
		wantConns int32
	}{
		{"unbounded keeps one connection", 0, 1},
		{"one request per connection", 1, 10},
		{"three per connection", 3, 4},
		{"a bound above the load changes nothing", 10, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, conns := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, "ok")
			}))
			tr := newTransport(t, srv.Listener.Addr().String(), nil, func(c *Config) { c.MaxRequestsPerConn = tt.perConn })
			for i := range 10 {
				if _, body, err := do(t, tr, get(t, srv.URL)); err != nil || body != "ok" {
					t.Fatalf("request %d: %q %v", i, body, err)
				}
			}
			if n := conns.Load(); n != tt.wantConns {
				t.Errorf("%d connections for 10 serial requests, want %d", n, tt.wantConns)
			}
		})
	}
}

func TestConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"address and fallback suffice", Config{Addr: "127.0.0.1:1", Fallback: &fallback{}}, true},
		{"no address", Config{Fallback: &fallback{}}, false},
		{"no fallback", Config{Addr: "127.0.0.1:1"}, false},
		{"negative limit", Config{Addr: "127.0.0.1:1", Fallback: &fallback{}, MaxBodyBytes: -1}, false},
		{"negative connection bound", Config{Addr: "127.0.0.1:1", Fallback: &fallback{}, MaxConns: -1}, false},
		{"negative requests per connection", Config{Addr: "127.0.0.1:1", Fallback: &fallback{}, MaxRequestsPerConn: -1}, false},
		{"https with a dial", Config{Addr: "127.0.0.1:1", Fallback: &fallback{}, Scheme: "https", Dial: func(context.Context) (net.Conn, error) { return nil, errors.New("x") }}, true},
		{"https without a dial", Config{Addr: "127.0.0.1:1", Fallback: &fallback{}, Scheme: "https"}, false},
		{"another scheme", Config{Addr: "127.0.0.1:1", Fallback: &fallback{}, Scheme: "ftp"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if (err == nil) != tt.ok {
				t.Errorf("New: %v", err)
			}
		})
	}
}

// A context that ends after its exchange has no hold on the connection,
// which by then serves other requests.
func TestContextEndingAfterExchange(t *testing.T) {
	for _, path := range []string{"/body", "/empty"} {
		t.Run(path, func(t *testing.T) {
			srv, conns := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/body" {
					io.WriteString(w, "body")
				}
			}))
			tr := newTransport(t, srv.Listener.Addr().String(), nil, nil)
			ctx, cancel := context.WithCancel(context.Background())
			if _, _, err := do(t, tr, newRequest(t, ctx, "GET", srv.URL+path, nil)); err != nil {
				t.Fatal(err)
			}
			cancel()
			time.Sleep(10 * time.Millisecond) // an AfterFunc left behind would fire now
			for i := range 3 {
				if _, _, err := do(t, tr, get(t, srv.URL+path)); err != nil {
					t.Fatalf("request %d after the first's context ended: %v", i, err)
				}
			}
			if n := conns.Load(); n != 1 {
				t.Errorf("%d connections, want 1", n)
			}
		})
	}
}

// TestMaxConnsSendsTheRestToFallback: with MaxConns open and all busy, a
// request goes to the fallback instead of opening another connection;
// once they are free again, the fast path reuses them.
func TestMaxConnsSendsTheRestToFallback(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 8)
	srv, conns := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			arrived <- struct{}{}
			<-release
		}
		io.WriteString(w, "ok")
	}))
	fb := &fallback{}
	tr := newTransport(t, srv.Listener.Addr().String(), fb, func(c *Config) { c.MaxConns = 2 })
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if _, body, err := do(t, tr, get(t, srv.URL+"/hold")); err != nil || body != "ok" {
				t.Errorf("held request: %q %v", body, err)
			}
		})
	}
	<-arrived
	<-arrived
	for i := range 3 {
		resp, _, err := do(t, tr, get(t, srv.URL+"/"))
		if err != nil || resp.StatusCode != 299 {
			t.Fatalf("request %d with both connections busy: %v %v, want the fallback's 299", i, resp, err)
		}
	}
	close(release)
	wg.Wait()
	for i := range 5 {
		if resp, body, err := do(t, tr, get(t, srv.URL+"/")); err != nil || resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("request %d after the burst: %v %q %v", i, resp, body, err)
		}
	}
	if n := fb.calls.Load(); n != 3 {
		t.Errorf("fallback carried %d requests, want 3", n)
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("%d connections opened, want 2", n)
	}
	if n := tr.open.Load(); n != 2 {
		t.Errorf("open count %d, want 2", n)
	}
	tr.CloseIdleConnections()
	if n := tr.open.Load(); n != 0 {
		t.Errorf("open count after CloseIdleConnections %d, want 0", n)
	}
}

// TestDialAndScheme: a Config.Dial makes the connections (here TLS, as the
// mesh's client proxy does) and Scheme says which URLs take the fast path.
func TestDialAndScheme(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Proto)
	}))
	srv.EnableHTTP2 = false
	srv.StartTLS()
	t.Cleanup(srv.Close)
	conf := srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	conf.NextProtos = []string{"http/1.1"}
	var dials atomic.Int32
	fb := &fallback{}
	tr := newTransport(t, srv.Listener.Addr().String(), fb, func(c *Config) {
		c.Scheme = "https"
		c.Dial = func(ctx context.Context) (net.Conn, error) {
			dials.Add(1)
			return (&tls.Dialer{Config: conf}).DialContext(ctx, "tcp", srv.Listener.Addr().String())
		}
	})
	for i := range 3 {
		if _, body, err := do(t, tr, get(t, srv.URL+"/")); err != nil || body != "HTTP/1.1" {
			t.Fatalf("request %d: %q %v", i, body, err)
		}
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("%d dials for 3 serial requests, want 1", n)
	}
	if resp, _, err := do(t, tr, get(t, "http://"+srv.Listener.Addr().String()+"/")); err != nil || resp.StatusCode != 299 {
		t.Errorf("an http URL on an https transport: %v %v, want the fallback", resp, err)
	}
	// A failed dial is returned as it is, for the caller to recognise.
	dialErr := errors.New("no route to the peer")
	tr2 := newTransport(t, "127.0.0.1:1", fb, func(c *Config) {
		c.Scheme = "https"
		c.Dial = func(context.Context) (net.Conn, error) { return nil, dialErr }
	})
	if _, err := tr2.RoundTrip(get(t, "https://127.0.0.1:1/")); !errors.Is(err, dialErr) {
		t.Errorf("dial failure: %v, want %v", err, dialErr)
	}
	if n := tr2.open.Load(); n != 0 {
		t.Errorf("open count after a failed dial %d, want 0", n)
	}
}

// TestUpgrade: a 101 answer to an upgrade request gives the caller the
// connection as a ReadWriteCloser (what ReverseProxy needs to tunnel),
// with bytes the server sent right after the 101 not lost; the connection
// never returns to the pool, and upgrades are not bounded by MaxConns.
func TestUpgrade(t *testing.T) {
	s := newRawServer(t, func(s *rawServer, n int, c net.Conn, br *bufio.Reader) {
		req, ok := s.readRequest(br)
		if !ok || req.Header.Get("Upgrade") != "test" {
			io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
			return
		}
		// The 101 and the new protocol's greeting in one write.
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\nhello\n")
		line, _ := br.ReadString('\n')
		io.WriteString(c, "echo "+line)
	})
	fb := &fallback{}
	tr := newTransport(t, s.addr(), fb, func(c *Config) { c.MaxConns = 1 })
	for i := range 2 { // two at once with MaxConns 1: both dial
		req := get(t, "http://app/up")
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", "test")
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("status %d", resp.StatusCode)
		}
		rwc, ok := resp.Body.(io.ReadWriteCloser)
		if !ok {
			t.Fatalf("the body of a 101 is a %T, not an io.ReadWriteCloser", resp.Body)
		}
		defer rwc.Close()
		br := bufio.NewReader(rwc)
		if line, err := br.ReadString('\n'); line != "hello\n" {
			t.Fatalf("upgrade %d: greeting %q %v", i, line, err)
		}
		io.WriteString(rwc, "ping\n")
		if line, err := br.ReadString('\n'); line != "echo ping\n" {
			t.Fatalf("upgrade %d: %q %v", i, line, err)
		}
	}
	if n := fb.calls.Load(); n != 0 {
		t.Errorf("%d upgrades went to the fallback", n)
	}
	if n := tr.idleCount(); n != 0 {
		t.Errorf("%d connections pooled after upgrades", n)
	}
	// A 101 to a request that did not ask for one is an error.
	s2 := newRawServer(t, func(s *rawServer, n int, c net.Conn, br *bufio.Reader) {
		s.readRequest(br)
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n")
	})
	tr2 := newTransport(t, s2.addr(), fb, nil)
	if _, err := tr2.RoundTrip(get(t, "http://app/")); err == nil {
		t.Error("a 101 to a plain GET was accepted")
	}
}

// TestPooledConnectionHoldsNoBuffers: a connection idle in the pool has
// given its reader and writer back; taken again, it has them.
func TestPooledConnectionHoldsNoBuffers(t *testing.T) {
	srv, conns := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	tr := newTransport(t, srv.Listener.Addr().String(), nil, nil)
	for i := range 3 {
		if _, body, err := do(t, tr, get(t, srv.URL)); err != nil || body != "ok" {
			t.Fatalf("request %d: %q %v", i, body, err)
		}
		tr.mu.Lock()
		if len(tr.idle) != 1 {
			t.Fatalf("after request %d: %d pooled connections", i, len(tr.idle))
		}
		if c := tr.idle[0]; c.br != nil || c.bw != nil {
			t.Errorf("after request %d the pooled connection holds its buffers", i)
		}
		tr.mu.Unlock()
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections for 3 serial requests", n)
	}
}
