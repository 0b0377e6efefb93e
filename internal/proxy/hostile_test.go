package proxy

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/zmesh/zmesh/internal/meshtest"
	"github.com/zmesh/zmesh/internal/registry"
	"github.com/zmesh/zmesh/internal/xds"
)

// hostileRig is every HTTP listener of a proxy pair, each reachable with
// a raw connection: the server's inbound over mutual TLS and in plaintext
// (PERMISSIVE), the client's outbound, and the server's admin listener.
// The server's app records the paths it is asked for.
type hostileRig struct {
	ca        *meshtest.CA
	server    *testProxy
	client    *testProxy
	cert      tls.Certificate
	mu        sync.Mutex
	appPaths  []string
	listeners []hostileListener
}

type hostileListener struct {
	name string
	host string // the Host header that reaches the app (or the admin)
	path string // a path the listener answers 200
	dial func(t *testing.T) net.Conn
}

// denySmuggled denies the path the smuggling tests hide behind a first
// request: if a parser reads it as a request of its own, policy still
// decides it.
const denySmuggled = `---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-smuggled, namespace: api}
spec:
  action: DENY
  rules:
  - to:
    - operation: {paths: ["/smuggled"]}
`

func newHostileRig(t *testing.T) *hostileRig {
	t.Helper()
	rig := &hostileRig{ca: meshtest.NewCA(t, testTD)}
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		rig.mu.Lock()
		rig.appPaths = append(rig.appPaths, r.URL.Path)
		rig.mu.Unlock()
	}))
	t.Cleanup(app.Close)
	rig.server = startProxyAt(t, rig.ca, "api", "backend", app.Listener.Addr().String(), testLogger(t))
	rig.client = startProxy(t, rig.ca, "web", "frontend", nil)
	mustApply(t, rig.server, policyView(t, "s1", mesh(), permissiveMesh+denySmuggled))
	mustApply(t, rig.client, &xds.View{Version: "c1", Mesh: mesh(), Services: []registry.Service{serviceOf(rig.server)}})
	rig.cert = rig.ca.Issue(t, "web", "frontend", time.Hour)
	tcp := func(addr net.Addr) func(t *testing.T) net.Conn {
		return func(t *testing.T) net.Conn { return dialRaw(t, addr) }
	}
	rig.listeners = []hostileListener{
		{"inbound mTLS", "backend.api", "/ok", func(t *testing.T) net.Conn {
			return rig.dialTLS(t, &tls.Config{NextProtos: []string{"http/1.1"}})
		}},
		{"inbound plaintext", "backend.api", "/ok", tcp(rig.server.InboundAddr())},
		{"outbound", "backend.api.svc.cluster.local", "/ok", tcp(rig.client.OutboundAddr())},
		{"admin", "admin", "/ready", tcp(rig.server.AdminAddr())},
	}
	return rig
}

// dialTLS opens a connection to the server's inbound as the frontend
// workload, with conf's protocol settings; the handshake's error is the
// caller's to check with Handshake.
func (rig *hostileRig) dialTLS(t *testing.T, conf *tls.Config) *tls.Conn {
	t.Helper()
	conf = conf.Clone()
	conf.Certificates = []tls.Certificate{rig.cert}
	conf.InsecureSkipVerify = true
	if conf.MinVersion == 0 {
		conf.MinVersion = tls.VersionTLS13
	}
	raw := dialRaw(t, rig.server.InboundAddr())
	return tls.Client(raw, conf)
}

func (rig *hostileRig) appSaw(path string) bool {
	rig.mu.Lock()
	defer rig.mu.Unlock()
	for _, p := range rig.appPaths {
		if p == path {
			return true
		}
	}
	return false
}

// exchange writes raw on a fresh connection to l and reads every response
// until the server closes the connection. A server that neither answers
// nor closes within the bound fails the test.
func exchange(t *testing.T, l hostileListener, raw string) (statuses []int, closed bool) {
	t.Helper()
	c := l.dial(t)
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatalf("write: %v", err)
	}
	br := bufio.NewReader(c)
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return statuses, false
			}
			return statuses, true
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		statuses = append(statuses, resp.StatusCode)
	}
}

// TestHTTPSmuggling: request framing that two HTTP parsers could read
// two ways, on every listener. Most is refused with a 400 (501 for a
// transfer coding it does not know) and the connection closed. What
// net/http reads one way and RFC 9112 lets it (Transfer-Encoding over
// Content-Length, obs-fold replaced by a space, bare LF as a line end,
// Transfer-Encoding ignored in HTTP/1.0) is marked lenient: there the
// request behind the first is an ordinary pipelined request, with its own
// response, and policy decides it like any other (here a DENY): it never
// reaches the app. The proxy re-frames what it forwards, so the app
// cannot be desynchronized either way.
func TestHTTPSmuggling(t *testing.T) {
	noLeaks(t)
	rig := newHostileRig(t)
	const smuggled = "GET /smuggled HTTP/1.1\r\nHost: %[1]s\r\nConnection: close\r\n\r\n"
	cases := []struct {
		name    string
		raw     string // %[1]s is the Host, %[2]s a path answered 200
		want    []int  // acceptable first statuses
		lenient bool
	}{
		{"Content-Length then Transfer-Encoding",
			"POST %[2]s HTTP/1.1\r\nHost: %[1]s\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, []int{200, 405}, true},
		{"Transfer-Encoding then Content-Length",
			"POST %[2]s HTTP/1.1\r\nHost: %[1]s\r\nTransfer-Encoding: chunked\r\nContent-Length: 60\r\n\r\n0\r\n\r\n" + smuggled, []int{200, 405}, true},
		{"two differing Content-Lengths",
			"POST %[2]s HTTP/1.1\r\nHost: %[1]s\r\nContent-Length: 0\r\nContent-Length: 43\r\n\r\n" + smuggled, []int{400}, false},
		{"Content-Length with a sign",
			"POST %[2]s HTTP/1.1\r\nHost: %[1]s\r\nContent-Length: +0\r\n\r\n" + smuggled, []int{400}, false},
		{"Content-Length list",
			"POST %[2]s HTTP/1.1\r\nHost: %[1]s\r\nContent-Length: 0, 43\r\n\r\n" + smuggled, []int{400}, false},
		{"obs-fold",
			"GET %[2]s HTTP/1.1\r\nHost: %[1]s\r\nX-A: a\r\n b\r\n\r\n" + smuggled, []int{200}, true},
		{"obs-fold hiding Transfer-Encoding",
			"POST %[2]s HTTP/1.1\r\nHost: %[1]s\r\nContent-Length: 5\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n" + smuggled, []int{200, 405}, true},
		{"bare LF line ends",
			"GET %[2]s HTTP/1.1\nHost: %[1]s\nX-A: a\n\n" + smuggled, []int{200}, true},
		{"bare LF inside a header line",
			"GET %[2]s HTTP/1.1\r\nHost: %[1]s\r\nX-A: a\nTransfer-Encoding: chunked\r\n\r\n" + smuggled, []int{200, 503}, true},
		{"bare CR inside a header value",
			"GET %[2]s HTTP/1.1\r\nHost: %[1]s\r\nX-A: a\rTransfer-Encoding: chunked\r\n\r\n" + smuggled, []int{400}, false},
		{"space before the colon",
			"POST %[2]s HTTP/1.1\r\nHost: %[1]s\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n" + smuggled, []int{400}, false},
		{"Transfer-Encoding in HTTP/1.0",
			"POST %[2]s HTTP/1.0\r\nHost: %[1]s\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, []int{200, 405}, true},
		{"an unknown transfer coding",
			"POST %[2]s HTTP/1.1\r\nHost: %[1]s\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n" + smuggled, []int{501}, false},
		{"chunked twice",
			"POST %[2]s HTTP/1.1\r\nHost: %[1]s\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, []int{501}, false},
		{"two Host headers",
			"GET %[2]s HTTP/1.1\r\nHost: %[1]s\r\nHost: other\r\n\r\n" + smuggled, []int{400}, false},
	}
	for _, l := range rig.listeners {
		for _, tc := range cases {
			t.Run(l.name+"/"+tc.name, func(t *testing.T) {
				statuses, closed := exchange(t, l, fmt.Sprintf(tc.raw, l.host, l.path))
				if len(statuses) == 0 || !containsInt(tc.want, statuses[0]) {
					t.Fatalf("responses %v, want first one of %v", statuses, tc.want)
				}
				switch {
				case !tc.lenient && (len(statuses) != 1 || !closed):
					t.Errorf("responses %v, closed %v: want one answer and the connection closed", statuses, closed)
				case tc.lenient && len(statuses) > 2:
					t.Errorf("responses %v: more requests than were sent", statuses)
				case tc.lenient && len(statuses) == 2 && l.name != "admin" && statuses[1] != 403:
					t.Errorf("responses %v: the second request was not decided by policy (403)", statuses)
				}
				if rig.appSaw("/smuggled") {
					t.Fatal("the smuggled request reached the app")
				}
			})
		}
		// Well-formed framing still works, pipelined.
		t.Run(l.name+"/well-formed chunked and pipelined", func(t *testing.T) {
			raw := fmt.Sprintf("POST %[2]s HTTP/1.1\r\nHost: %[1]s\r\nTransfer-Encoding: chunked\r\n\r\n2;ext=1\r\nhi\r\n0\r\nX-Trailer: 1\r\n\r\n"+
				"POST %[2]s HTTP/1.1\r\nHost: %[1]s\r\nContent-Length: 2\r\n\r\nhi"+
				"GET %[2]s HTTP/1.1\r\nHost: %[1]s\r\nConnection: close\r\n\r\n", l.host, l.path)
			want := []int{200, 200, 200}
			if l.name == "admin" {
				want = []int{405, 405, 200} // GET only
			}
			if statuses, _ := exchange(t, l, raw); fmt.Sprint(statuses) != fmt.Sprint(want) {
				t.Fatalf("responses %v, want %v", statuses, want)
			}
		})
	}
}

func containsInt(list []int, v int) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// TestHeaderFloods: a request head past the size bound, or with more
// header fields than Envoy takes (100), is answered 431 on every
// listener, and the connection is closed.
func TestHeaderFloods(t *testing.T) {
	noLeaks(t)
	rig := newHostileRig(t)
	many := func(n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "X-H%d: v\r\n", i)
		}
		return b.String()
	}
	cases := []struct {
		name   string
		extra  string
		status int
	}{
		{"one huge header", "X-Big: " + strings.Repeat("a", 2*maxHeaderBytes) + "\r\n", 431},
		{"ten thousand headers", many(10000), 431},
		{"a huge request line", "", 431},
		{"101 small headers", many(101), 431},
		{"100 small headers", many(98), 200}, // with Host and Connection: 100
	}
	for _, l := range rig.listeners {
		for _, tc := range cases {
			t.Run(l.name+"/"+tc.name, func(t *testing.T) {
				path := l.path
				if tc.name == "a huge request line" {
					path += "?" + strings.Repeat("q", 2*maxHeaderBytes)
				}
				statuses, closed := exchange(t, l, fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\n%sConnection: close\r\n\r\n", path, l.host, tc.extra))
				want := tc.status
				if l.name == "admin" && want == 431 && tc.name == "101 small headers" {
					want = 200 // the admin listener has no count limit: its size bound holds
				}
				if len(statuses) != 1 || statuses[0] != want && !(l.name == "admin" && want == 200 && statuses[0] == 503) {
					t.Errorf("responses %v, want [%d]", statuses, want)
				}
				if !closed {
					t.Error("the connection was left open")
				}
			})
		}
	}
}

// TestSlowloris: a connection that trickles its request head, or sends
// nothing at all, is cut within the header time-out, on every listener
// and before the TLS handshake too.
func TestSlowloris(t *testing.T) {
	// Restored after the proxies stop: cleanups run last-in first-out.
	t.Cleanup(shortenTimeouts(time.Second))
	noLeaks(t)
	rig := newHostileRig(t)
	trickle := func(t *testing.T, c net.Conn, head string) time.Duration {
		start := time.Now()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		for i := 0; ; i++ {
			if _, err := io.WriteString(c, head[i%len(head):i%len(head)+1]); err != nil {
				return time.Since(start)
			}
			// The pace is the attack: one byte every 50 ms.
			time.Sleep(50 * time.Millisecond)
			if i > 0 && i%10 == 0 {
				c.SetReadDeadline(time.Now().Add(time.Millisecond))
				if _, err := c.Read(make([]byte, 1)); err != nil {
					var ne net.Error
					if !errors.As(err, &ne) || !ne.Timeout() {
						return time.Since(start)
					}
				}
				c.SetDeadline(time.Now().Add(10 * time.Second))
			}
		}
	}
	for _, l := range rig.listeners {
		t.Run(l.name+"/trickled head", func(t *testing.T) {
			c := l.dial(t)
			if tc, ok := c.(*tls.Conn); ok {
				if err := tc.Handshake(); err != nil {
					t.Fatal(err)
				}
			}
			if d := trickle(t, c, fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\nX-Slow: "+strings.Repeat("a", 1000), l.path, l.host)); d > 5*time.Second {
				t.Errorf("cut after %v, want about the 1 s header time-out", d)
			}
		})
		t.Run(l.name+"/silent", func(t *testing.T) {
			c := dialRaw(t, addrOf(rig, l.name))
			start := time.Now()
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err := c.Read(make([]byte, 1))
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("a silent connection was kept open for 10 s")
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("cut after %v", d)
			}
		})
	}
	t.Run("inbound mTLS/trickled ClientHello", func(t *testing.T) {
		c := dialRaw(t, rig.server.InboundAddr())
		hello := "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + strings.Repeat("\x00", 600)
		if d := trickle(t, c, hello); d > 5*time.Second {
			t.Errorf("cut after %v", d)
		}
	})
}

func addrOf(rig *hostileRig, name string) net.Addr {
	switch name {
	case "outbound":
		return rig.client.OutboundAddr()
	case "admin":
		return rig.server.AdminAddr()
	}
	return rig.server.InboundAddr()
}

// shortenTimeouts sets the header and handshake time-outs to d for
// proxies started from now on, and returns the function that restores
// them.
func shortenTimeouts(d time.Duration) func() {
	h, r := handshakeTimeout, readHeaderTimeout
	handshakeTimeout, readHeaderTimeout = d, d
	return func() { handshakeTimeout, readHeaderTimeout = h, r }
}

// TestTLSDowngradeAndALPN: the mTLS inbound takes TLS 1.3 only (by
// default), refuses protocols it does not speak, and an HTTP/2 connection
// is HTTP/2, never a TCP tunnel to the app.
func TestTLSDowngradeAndALPN(t *testing.T) {
	noLeaks(t)
	rig := newHostileRig(t)
	handshake := func(conf *tls.Config) (*tls.Conn, error) {
		c := rig.dialTLS(t, conf)
		c.SetDeadline(time.Now().Add(5 * time.Second))
		return c, c.Handshake()
	}
	for _, tc := range []struct {
		name string
		conf *tls.Config
	}{
		{"TLS 1.2 only", &tls.Config{MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}},
		{"TLS 1.1 only", &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11, NextProtos: []string{"http/1.1"}}},
		{"an unknown ALPN protocol only", &tls.Config{NextProtos: []string{"spdy/3.1"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := handshake(tc.conf)
			if err == nil {
				t.Fatalf("handshake succeeded: version %x, ALPN %q", c.ConnectionState().Version, c.ConnectionState().NegotiatedProtocol)
			}
		})
	}
	t.Run("no ALPN is HTTP/1.1", func(t *testing.T) {
		c, err := handshake(&tls.Config{})
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "GET /ok HTTP/1.1\r\nHost: backend.api\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("got %v %v", resp, err)
		}
		resp.Body.Close()
	})
	t.Run("h2 with bytes that are not HTTP/2", func(t *testing.T) {
		c, err := handshake(&tls.Config{NextProtos: []string{http2.NextProtoTLS}})
		if err != nil || c.ConnectionState().NegotiatedProtocol != http2.NextProtoTLS {
			t.Fatalf("handshake: %v %q", err, c.ConnectionState().NegotiatedProtocol)
		}
		io.WriteString(c, "zmesh-tcp/1 source-workload=frontend\nGET /tunnelled HTTP/1.1\r\nHost: backend.api\r\n\r\n")
		b, _ := io.ReadAll(c)
		if strings.Contains(string(b), "HTTP/1.1 200") {
			t.Errorf("answered %q", b)
		}
		if rig.appSaw("/tunnelled") {
			t.Error("the bytes reached the app")
		}
	})
	t.Run("the TCP protocol with an HTTP/2 preface", func(t *testing.T) {
		c, err := handshake(&tls.Config{NextProtos: []string{alpnTCP}})
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, http2.ClientPreface)
		if n, err := c.Read(make([]byte, 64)); err == nil {
			t.Errorf("the stream answered %d bytes", n)
		}
	})
}
