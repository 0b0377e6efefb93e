package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zmesh/zmesh/internal/meshtest"
	"github.com/zmesh/zmesh/internal/registry"
	"github.com/zmesh/zmesh/internal/xds"
)

// http1App is an app that reports the request body size it read
// (X-Received), echoes a line after an "Upgrade: test", and counts its
// requests and connections; closed receives when it closes one.
type http1App struct {
	*httptest.Server
	requests atomic.Int32
	conns    atomic.Int32
	closed   chan struct{}
}

func newHTTP1App(t *testing.T, idleTimeout time.Duration) *http1App {
	a := &http1App{closed: make(chan struct{}, 16)}
	a.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.requests.Add(1)
		if r.Header.Get("Upgrade") == "test" {
			c, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer c.Close()
			io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n")
			line, _ := brw.ReadString('\n')
			io.WriteString(c, line)
			return
		}
		n, _ := io.Copy(io.Discard, r.Body)
		w.Header().Set("X-Received", strconv.FormatInt(n, 10))
		io.WriteString(w, "ok")
	}))
	a.Config.IdleTimeout = idleTimeout
	a.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			a.conns.Add(1)
		case http.StateClosed:
			a.closed <- struct{}{}
		}
	}
	a.Start()
	t.Cleanup(a.Close)
	return a
}

// plainInbound runs a PERMISSIVE server proxy in front of app and returns
// its inbound URL.
func plainInbound(t *testing.T, app *httptest.Server) string {
	ca := meshtest.NewCA(t, testTD)
	server := startProxy(t, ca, "api", "backend", app)
	mustApply(t, server, &xds.View{Version: "1", Mesh: mesh(), PeerAuthentications: parse(t, permissiveMesh)})
	return "http://" + server.InboundAddr().String()
}

// The inbound proxy sends what its one-goroutine HTTP/1.1 transport
// cannot do to the pooled http.Transport; every kind of request reaches
// the app whole.
func TestInboundRequestsToAppHTTP1(t *testing.T) {
	app := newHTTP1App(t, 0)
	url := plainInbound(t, app.Server)
	tr := &http.Transport{ExpectContinueTimeout: time.Second}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}

	tests := []struct {
		name   string
		method string
		size   int
		stream bool // length unknown: sent chunked
		expect bool
	}{
		{name: "GET", method: "GET"},
		{name: "small body, in one goroutine", method: "POST", size: 1 << 10},
		{name: "large body, by the fallback", method: "POST", size: 1 << 20},
		{name: "body of unknown length, by the fallback", method: "PUT", size: 100 << 10, stream: true},
		{name: "Expect: 100-continue, by the fallback", method: "POST", size: 10, expect: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body io.Reader
			if tt.size > 0 {
				body = strings.NewReader(strings.Repeat("b", tt.size))
				if tt.stream {
					body = io.MultiReader(body)
				}
			}
			req, err := http.NewRequest(tt.method, url+"/x", body)
			if err != nil {
				t.Fatal(err)
			}
			if tt.expect {
				req.Header.Set("Expect", "100-continue")
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(b) != "ok" || resp.Header.Get("X-Received") != strconv.Itoa(tt.size) {
				t.Errorf("got %d %q, app received %s bytes, want 200 ok %d", resp.StatusCode, b, resp.Header.Get("X-Received"), tt.size)
			}
		})
	}
}

func TestInboundUpgradeToAppHTTP1(t *testing.T) {
	app := newHTTP1App(t, 0)
	url := plainInbound(t, app.Server)
	c, err := net.DialTimeout("tcp", strings.TrimPrefix(url, "http://"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET /up HTTP/1.1\r\nHost: backend\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d", resp.StatusCode)
	}
	io.WriteString(c, "ping\n")
	if line, err := br.ReadString('\n'); line != "ping\n" {
		t.Errorf("echo %q %v", line, err)
	}
}

// An app that closes idle keep-alive connections: the next request, GET
// or POST, gets through once, on a new connection.
func TestInboundAppClosesIdleConnectionsHTTP1(t *testing.T) {
	app := newHTTP1App(t, 20*time.Millisecond)
	url := plainInbound(t, app.Server)
	client := &http.Client{Timeout: 10 * time.Second}
	waitClosed := func() {
		select {
		case <-app.closed:
		case <-time.After(5 * time.Second):
			t.Fatal("app kept its idle connection")
		}
	}
	for i, method := range []string{"GET", "GET", "POST"} {
		var body io.Reader
		if method == "POST" {
			body = strings.NewReader("once")
		}
		req, _ := http.NewRequest(method, url+"/x", body)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: status %d", i, resp.StatusCode)
		}
		waitClosed()
	}
	client.CloseIdleConnections()
	if n := app.requests.Load(); n != 3 {
		t.Errorf("app served %d requests, want 3", n)
	}
	if n := app.conns.Load(); n != 3 {
		t.Errorf("app saw %d connections, want 3", n)
	}
}

// TestUpgradeThroughTheMesh: an upgrade (WebSocket and the like) from the
// client app crosses the mesh: client proxy, mutual TLS HTTP/1.1, server
// proxy, app, and the upgraded connection carries bytes both ways. Under
// h2UpgradePolicy UPGRADE too: an upgrade cannot ride HTTP/2.
func TestUpgradeThroughTheMesh(t *testing.T) {
	app := newHTTP1App(t, 0)
	p := newPairWith(t, mesh(), strictMesh+"---\n"+allowFrontend, app.Server)
	upgrade := func(what string) {
		t.Helper()
		c, err := net.DialTimeout("tcp", p.client.OutboundAddr().String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "GET /up HTTP/1.1\r\nHost: backend.api.svc.cluster.local\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n")
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if resp.StatusCode != http.StatusSwitchingProtocols {
			body, _ := io.ReadAll(resp.Body)
			t.Fatalf("%s: status %d %s", what, resp.StatusCode, body)
		}
		io.WriteString(c, "ping through the mesh\n")
		if line, err := br.ReadString('\n'); line != "ping through the mesh\n" {
			t.Errorf("%s: echo %q %v", what, line, err)
		}
	}
	upgrade("default")
	m := mesh()
	m.H2UpgradePolicy = "UPGRADE"
	mustApply(t, p.client, &xds.View{Version: "c2", Mesh: m, Services: []registry.Service{serviceOf(p.server)}})
	upgrade("h2UpgradePolicy UPGRADE")

	// Authorization applies to the upgrade request: a caller the policy
	// does not allow gets 403 and never a tunnel.
	stranger := startProxy(t, p.ca, "web", "stranger", echoApp(t))
	mustApply(t, stranger, &xds.View{Version: "x1", Mesh: mesh(), Services: []registry.Service{serviceOf(p.server)}})
	before := app.requests.Load()
	c, err := net.DialTimeout("tcp", stranger.OutboundAddr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET /up HTTP/1.1\r\nHost: backend.api.svc.cluster.local\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("stranger's upgrade: status %d, want 403", resp.StatusCode)
	}
	if n := app.requests.Load(); n != before {
		t.Errorf("the app saw %d requests from a denied upgrade", n-before)
	}
}
