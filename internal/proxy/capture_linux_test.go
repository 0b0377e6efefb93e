//go:build linux

package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zmesh/zmesh/internal/capture"
	"github.com/zmesh/zmesh/internal/meshtest"
	"github.com/zmesh/zmesh/internal/registry"
	"github.com/zmesh/zmesh/internal/xds"
)

// startCapturedProxy runs web/frontend's proxy with its listeners in ns
// and the kernel's original destination (capture on).
func startCapturedProxy(t *testing.T, ca *meshtest.CA, ns *testNetns) *testProxy {
	t.Helper()
	w := registry.Workload{Name: "frontend", Namespace: "web", ServiceAccount: "frontend", Labels: map[string]string{"app": "frontend"}}
	certs := newTestCerts(t, ca, w.Namespace, w.ServiceAccount)
	var p *Proxy
	var err error
	ns.do(func() {
		p, err = New(Config{
			Workload: w, TrustDomain: ca.TrustDomain,
			InboundAddr: "127.0.0.1:0", OutboundAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
			AppAddr: "127.0.0.1:1", Certs: certs, Logger: testLogger(t),
			OriginalDst: capture.OriginalDst,
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	stop := sync.OnceFunc(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Run did not return")
		}
	})
	t.Cleanup(stop)
	return &testProxy{Proxy: p, certs: certs, reg: w, stop: stop}
}

// TestCapturedOutbound: an app in a network namespace with no proxy
// setting reaches mesh services through the kernel's redirect, each
// protocol on its path, and REGISTRY_ONLY leaves it no way around.
func TestCapturedOutbound(t *testing.T) {
	const podIP = "10.77.0.2"
	ns := newTestNetns(t, podIP)
	ca := meshtest.NewCA(t, testTD)

	// Host side: server proxies in front of an HTTP echo app, a
	// server-first TCP app and a TLS app.
	httpSrv := startProxy(t, ca, "api", "backend", echoApp(t))
	tcpAddr, _ := tcpApp(t)
	tcpSrv := startProxyAt(t, ca, "api", "db", tcpAddr, testLogger(t))
	tlsApp := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "tls app") }))
	t.Cleanup(tlsApp.Close)
	tlsSrv := startProxyAt(t, ca, "api", "secure", tlsApp.Listener.Addr().String(), testLogger(t))
	for _, s := range []*testProxy{httpSrv, tcpSrv, tlsSrv} {
		mustApply(t, s, policyView(t, "s1", mesh(), strictMesh))
	}
	// Outside the mesh: a TLS server on the host's loopback.
	external := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "external") }))
	t.Cleanup(external.Close)

	svc := func(tp *testProxy, host, vip string, ports ...registry.Port) registry.Service {
		s := serviceOf(tp)
		s.Hostname, s.Addresses, s.Ports = host, []string{vip}, ports
		return s
	}
	services := []registry.Service{
		svc(httpSrv, "backend.api.svc.cluster.local", "240.240.0.10", registry.Port{Number: 80, Name: "http"}),
		svc(tcpSrv, "db.api.svc.cluster.local", "240.240.0.11", registry.Port{Number: 3306, Name: "mysql"}),
		svc(tcpSrv, "legacy.api.svc.cluster.local", "240.240.0.12"), // no ports: sniffed
		svc(tlsSrv, "secure.api.svc.cluster.local", "240.240.0.13", registry.Port{Number: 443, Name: "https"}),
	}
	cli := startCapturedProxy(t, ca, ns)
	mustApply(t, cli, &xds.View{Version: "c1", Mesh: mesh(), Services: services})
	ns.redirectOutbound(t, uint16(cli.OutboundAddr().(*net.TCPAddr).Port))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	httpc := func(dialTo string) *http.Client {
		tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return ns.dial(ctx, dialTo) }}
		t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr, Timeout: 10 * time.Second}
	}
	getHost := func(c *http.Client, host string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+host+"/x", nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", host, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	t.Run("HTTP to a service's virtual address, over mTLS", func(t *testing.T) {
		code, body := getHost(httpc("240.240.0.10:80"), "240.240.0.10")
		if code != 200 || !strings.Contains(echoField(body, "xfcc"), "URI=spiffe://cluster.local/ns/web/sa/frontend") {
			t.Fatalf("%d %s", code, body)
		}
	})
	t.Run("HTTP routed by Host, wherever it was sent", func(t *testing.T) {
		code, body := getHost(httpc("10.200.0.9:80"), "backend.api.svc.cluster.local")
		if code != 200 || echoField(body, "host") != "backend.api.svc.cluster.local" || echoField(body, "xfcc") == "" {
			t.Fatalf("%d %s", code, body)
		}
	})
	readBanner := func(t *testing.T, addr string) (net.Conn, *bufio.Reader, time.Duration) {
		t.Helper()
		start := time.Now()
		c, err := ns.dial(ctx, addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		expectLine(t, br, "220 line-echo ready")
		return c, br, time.Since(start)
	}
	t.Run("server-first TCP on a port declared mysql: the banner at once", func(t *testing.T) {
		c, br, _ := readBanner(t, "240.240.0.11:3306")
		io.WriteString(c, "ping\n")
		expectLine(t, br, "ping")
	})
	t.Run("server-first TCP on an undeclared port: after the detection time-out", func(t *testing.T) {
		c, br, took := readBanner(t, "240.240.0.12:7777")
		if took < DefaultProtocolDetection {
			t.Errorf("banner after %v, before the detection time-out", took)
		}
		io.WriteString(c, "pong\n")
		expectLine(t, br, "pong")
	})
	t.Run("opaque client-first TCP to a service", func(t *testing.T) {
		c, err := ns.dial(ctx, "240.240.0.12:7777")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "\x00\x01binary\n")
		br := bufio.NewReader(c)
		expectLine(t, br, "220 line-echo ready")
		expectLine(t, br, "\x00\x01binary")
	})
	// tlsGet speaks TLS from the namespace to dialTo, asking for sni and
	// accepting exactly the certificate want: the proxies passed the
	// app's TLS through untouched, end to end.
	tlsGet := func(t *testing.T, dialTo, sni string, want *x509.Certificate) string {
		t.Helper()
		raw, err := ns.dial(ctx, dialTo)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		raw.SetDeadline(time.Now().Add(10 * time.Second))
		tc := tls.Client(raw, &tls.Config{ServerName: sni, InsecureSkipVerify: true,
			VerifyConnection: func(cs tls.ConnectionState) error {
				if !cs.PeerCertificates[0].Equal(want) {
					return errors.New("not the expected server's certificate")
				}
				return nil
			}})
		if err := tc.Handshake(); err != nil {
			t.Fatalf("TLS to %s (SNI %s): %v", dialTo, sni, err)
		}
		io.WriteString(tc, "GET / HTTP/1.1\r\nHost: "+sni+"\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	t.Run("the app's own TLS to a mesh service, routed by SNI", func(t *testing.T) {
		// Addressed to a documentation address outside the mesh: the
		// SNI decides.
		if got := tlsGet(t, "192.0.2.7:443", "secure.api.svc.cluster.local", tlsApp.Certificate()); got != "tls app" {
			t.Fatalf("got %q", got)
		}
	})
	t.Run("the app's own TLS to a mesh service's virtual address", func(t *testing.T) {
		if got := tlsGet(t, "240.240.0.13:443", "example.com", tlsApp.Certificate()); got != "tls app" {
			t.Fatalf("got %q", got)
		}
	})
	t.Run("the app's own TLS outside the mesh passes through (ALLOW_ANY)", func(t *testing.T) {
		if got := tlsGet(t, external.Listener.Addr().String(), "example.com", external.Certificate()); got != "external" {
			t.Fatalf("got %q", got)
		}
	})

	// A loopback-looking address outside the mesh, with a server behind it
	// (in the test's namespace, where passthrough connections come from).
	lb, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lb.Close() })
	go func() {
		for {
			c, err := lb.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.WriteString(c, "loopback server\n") }()
		}
	}()
	t.Run("ALLOW_ANY passes through to a loopback-looking address", func(t *testing.T) {
		c, err := ns.dial(ctx, lb.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "\x00hello\n")
		expectLine(t, bufio.NewReader(c), "loopback server")
	})

	// REGISTRY_ONLY: only what the registry knows.
	m := mesh()
	m.OutboundTrafficPolicy = "REGISTRY_ONLY"
	mustApply(t, cli, &xds.View{Version: "c2", Mesh: m, Services: services})
	_, extPort, _ := net.SplitHostPort(external.Listener.Addr().String())
	for _, dst := range []string{
		external.Listener.Addr().String(), // the external server on loopback
		lb.Addr().String(),                // a loopback-looking address, a server behind it
		podIP + ":" + extPort,             // the pod's own address, another port
		"240.240.0.11:3307",               // a mesh service's address, a port it does not have
		"192.0.2.5:80",
	} {
		t.Run("REGISTRY_ONLY refuses "+dst, func(t *testing.T) {
			c, err := ns.dial(ctx, dst)
			if err != nil {
				return // refused outright: fine
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(c, "\x00hello\n") // neither HTTP nor TLS
			if b, _ := io.ReadAll(c); len(b) != 0 {
				t.Fatalf("got %q through", b)
			}
		})
	}
	t.Run("REGISTRY_ONLY: HTTP to an unknown host is 502", func(t *testing.T) {
		if code, _ := getHost(httpc(external.Listener.Addr().String()), "example.org"); code != http.StatusBadGateway {
			t.Fatalf("status %d", code)
		}
	})
	t.Run("REGISTRY_ONLY: mesh services still work", func(t *testing.T) {
		if code, body := getHost(httpc("240.240.0.10:80"), "240.240.0.10"); code != 200 {
			t.Fatalf("%d %s", code, body)
		}
		c, br, _ := readBanner(t, "240.240.0.11:3306")
		io.WriteString(c, "still\n")
		expectLine(t, br, "still")
	})
}
