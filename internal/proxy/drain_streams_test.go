package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/zmesh/zmesh/internal/meshtest"
	"github.com/zmesh/zmesh/internal/registry"
	"github.com/zmesh/zmesh/internal/xds"
)

// Drain and the streams http.Server does not track: captured raw TCP,
// CONNECT tunnels and upgraded (WebSocket) connections. Each test starts
// a drain whose "deadline" the test decides (a cancelled context), so
// that what happens before it is not a race against a clock.

// echoUpgradeApp answers "Upgrade: test" with 101 and then echoes every
// byte until the connection closes, as a WebSocket echo server would.
func echoUpgradeApp(t *testing.T) *httptest.Server {
	t.Helper()
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "test" {
			io.WriteString(w, "not upgraded\n")
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n")
		io.Copy(c, brw)
	}))
	t.Cleanup(app.Close)
	return app
}

// upgradeThrough asks the outbound listener at addr to upgrade a request
// to host and returns the upgraded stream.
func upgradeThrough(t *testing.T, addr net.Addr, host string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr.String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: "+host+"\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %s", resp.Status)
	}
	return c, br
}

// echoes checks that a line sent on c comes back.
func echoes(t *testing.T, c net.Conn, br *bufio.Reader, line string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, line); err != nil {
		t.Fatalf("write %q: %v", line, err)
	}
	if got, err := br.ReadString('\n'); got != line {
		t.Fatalf("echo of %q = %q, %v", line, got, err)
	}
}

// closedByPeer checks that the other end closes c: a read ends with EOF
// or a reset, not with the read deadline.
func closedByPeer(t *testing.T, c net.Conn, br *bufio.Reader) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.Copy(io.Discard, br)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the stream is still open after the proxy should have closed it")
	}
}

// drainAsync starts p's drain and returns its outcome's channel and the
// function that ends the drain's time.
func drainAsync(p *testProxy) (<-chan error, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Drain(ctx) }()
	return done, cancel
}

// stillDraining checks that Drain has not returned.
func stillDraining(t *testing.T, done <-chan error, what string) {
	t.Helper()
	select {
	case err := <-done:
		t.Fatalf("Drain returned %v with %s open", err, what)
	default:
	}
}

// drainEnds waits for Drain's outcome and checks it is want (nil, or the
// cancelled context's error).
func drainEnds(t *testing.T, done <-chan error, want error) {
	t.Helper()
	select {
	case err := <-done:
		if !errors.Is(err, want) && !(want == nil && err == nil) {
			t.Fatalf("Drain = %v, want %v", err, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Drain did not return")
	}
}

// capturedTCP runs an app proxy (web/frontend) whose outbound listener
// takes captured connections addressed to backend's endpoint (the kernel's
// answer injected, as TestCapturedOutbound has the real one), backend
// serving the line-echo tcpApp under STRICT, and opens one captured
// stream through it: frontend relays it as a mesh TCP stream.
func capturedTCP(t *testing.T) (frontend *testProxy, c net.Conn, br *bufio.Reader) {
	t.Helper()
	ca := meshtest.NewCA(t, testTD)
	appAddr, _ := tcpApp(t)
	backend := startProxyAt(t, ca, "api", "backend", appAddr, testLogger(t))
	mustApply(t, backend, policyView(t, "s1", mesh(), strictMesh))
	dst := netip.MustParseAddrPort(backend.InboundAddr().String())
	w := registry.Workload{Name: "frontend", Namespace: "web", ServiceAccount: "frontend"}
	frontend = startProxyFor(t, ca, w, "127.0.0.1:1", func(c *Config) {
		c.OriginalDst = func(net.Conn) (netip.AddrPort, error) { return dst, nil }
	})
	mustApply(t, frontend, &xds.View{Version: "f1", Mesh: mesh(), Services: []registry.Service{serviceOf(backend)}})
	c, err := net.DialTimeout("tcp", frontend.OutboundAddr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	br = bufio.NewReader(c)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if greet, err := br.ReadString('\n'); !strings.HasPrefix(greet, "220") {
		t.Fatalf("greeting through capture = %q, %v", greet, err)
	}
	return frontend, c, br
}

func TestDrainWaitsForCapturedTCP(t *testing.T) {
	t.Run("closed at the deadline", func(t *testing.T) {
		p, c, br := capturedTCP(t)
		done, deadline := drainAsync(p)
		defer deadline()
		waitFor(t, p.Draining)
		// New captured connections are refused: the listener is closed.
		waitFor(t, func() bool { return refused(p.OutboundAddr()) })
		echoes(t, c, br, "still flowing\n")
		stillDraining(t, done, "a captured TCP stream")
		deadline()
		drainEnds(t, done, context.Canceled)
		closedByPeer(t, c, br)
	})
	t.Run("the drain ends with the last stream", func(t *testing.T) {
		p, c, br := capturedTCP(t)
		done, deadline := drainAsync(p)
		defer deadline()
		waitFor(t, func() bool { return refused(p.OutboundAddr()) })
		echoes(t, c, br, "still flowing\n")
		stillDraining(t, done, "a captured TCP stream")
		c.Close()
		drainEnds(t, done, nil)
	})
}

// TestDrainClosesInboundTCPAtTheDeadline: the server proxy's side of a
// mesh TCP stream is closed by Drain itself when its time is up, not left
// to whoever stops the proxy afterwards.
func TestDrainClosesInboundTCPAtTheDeadline(t *testing.T) {
	cli, srv, _ := tcpPair(t, "frontend", strictMesh)
	c, br := connect(t, cli, "backend.api.svc.cluster.local:9000")
	if greet, err := br.ReadString('\n'); !strings.HasPrefix(greet, "220") {
		t.Fatalf("greeting = %q, %v", greet, err)
	}
	done, deadline := drainAsync(srv)
	defer deadline()
	waitFor(t, func() bool { return refused(srv.InboundAddr()) })
	echoes(t, c, br, "still flowing\n")
	stillDraining(t, done, "a TCP stream")
	deadline()
	drainEnds(t, done, context.Canceled)
	closedByPeer(t, c, br)
}

// TestDrainWaitsForUpgradedConnections: a WebSocket-style upgraded
// connection is a stream like a TCP one, on either proxy: the drain waits
// for it, it carries bytes meanwhile, and it is closed at the deadline.
func TestDrainWaitsForUpgradedConnections(t *testing.T) {
	for _, side := range []string{"server", "client"} {
		for _, end := range []string{"ends", "deadline"} {
			t.Run(side+" "+end, func(t *testing.T) {
				p := newPairWith(t, mesh(), strictMesh, echoUpgradeApp(t))
				c, br := upgradeThrough(t, p.client.OutboundAddr(), "backend.api.svc.cluster.local")
				echoes(t, c, br, "before\n")
				drained := p.server
				if side == "client" {
					drained = p.client
				}
				done, deadline := drainAsync(drained)
				defer deadline()
				waitFor(t, func() bool { return refused(drained.InboundAddr()) })
				if side == "client" {
					waitFor(t, func() bool { return refused(drained.OutboundAddr()) })
				}
				echoes(t, c, br, "during the drain\n")
				stillDraining(t, done, "an upgraded connection")
				if end == "ends" {
					c.Close()
					drainEnds(t, done, nil)
					return
				}
				deadline()
				drainEnds(t, done, context.Canceled)
				closedByPeer(t, c, br)
			})
		}
	}
}

// TestStopClosesUpgradedConnections: stopping the proxy (without a drain)
// closes upgraded connections too; they do not outlive Run.
func TestStopClosesUpgradedConnections(t *testing.T) {
	p := newPairWith(t, mesh(), strictMesh, echoUpgradeApp(t))
	c, br := upgradeThrough(t, p.client.OutboundAddr(), "backend.api.svc.cluster.local")
	echoes(t, c, br, "before\n")
	p.server.stop()
	closedByPeer(t, c, br)
}
