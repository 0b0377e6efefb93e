package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	meshv1alpha1 "istio.io/api/mesh/v1alpha1"

	"github.com/zmesh/zmesh/internal/meshtest"
	"github.com/zmesh/zmesh/internal/registry"
	"github.com/zmesh/zmesh/internal/xds"
)

// tcpApp is a line-echo server that speaks no HTTP: it greets first (a
// server-first protocol, which no HTTP detection could pass), then echoes
// each line. It counts the connections it got.
func tcpApp(t testing.TB) (addr string, conns *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	conns = new(atomic.Int32)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer c.Close()
				io.WriteString(c, "220 line-echo ready\n")
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String(), conns
}

// tcpPair is a client proxy (web/<client>) that knows the service of a
// server proxy (api/backend) in front of tcpApp, with serverPolicies.
func tcpPair(t *testing.T, client, serverPolicies string) (cli, srv *testProxy, appConns *atomic.Int32) {
	t.Helper()
	ca := meshtest.NewCA(t, testTD)
	appAddr, appConns := tcpApp(t)
	srv = startProxyAt(t, ca, "api", "backend", appAddr, testLogger(t))
	cli = startProxy(t, ca, "web", client, nil)
	mustApply(t, srv, policyView(t, "s1", mesh(), serverPolicies))
	mustApply(t, cli, &xds.View{Version: "c1", Mesh: mesh(), Services: []registry.Service{serviceOf(srv)}})
	return cli, srv, appConns
}

// connect asks p's outbound listener for a tunnel to target, as an
// HTTP_PROXY-aware app does for non-HTTP traffic, and returns the stream.
func connect(t *testing.T, p *testProxy, target string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", p.OutboundAddr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "CONNECT "+target+" HTTP/1.1\r\nHost: "+target+"\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatalf("CONNECT %s: %v", target, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT %s: %s", target, resp.Status)
	}
	return c, br
}

func TestTCPToMeshServiceOverMTLS(t *testing.T) {
	cli, srv, appConns := tcpPair(t, "frontend", strictMesh+"---\n"+allowFrontend)
	c, br := connect(t, cli, "backend.api.svc.cluster.local:9000")
	if greet, err := br.ReadString('\n'); err != nil || greet != "220 line-echo ready\n" {
		t.Fatalf("greeting = %q, %v", greet, err)
	}
	for _, line := range []string{"hello\n", "a second line\n"} {
		io.WriteString(c, line)
		if got, err := br.ReadString('\n'); err != nil || got != line {
			t.Fatalf("echo = %q, %v; want %q", got, err, line)
		}
	}
	c.Close()
	if n := appConns.Load(); n != 1 {
		t.Errorf("app got %d connections, want 1", n)
	}
	// Both proxies report the stream as mutual TLS, with the identities.
	waitFor(t, func() bool {
		return strings.Contains(scrape(t, srv), `istio_tcp_connections_closed_total{`)
	})
	for _, p := range []*testProxy{cli, srv} {
		m := scrape(t, p)
		line := metricLine(m, "istio_tcp_connections_opened_total{", `destination_service="backend.api.svc.cluster.local"`)
		if line == "" || !strings.Contains(line, `connection_security_policy="mutual_tls"`) ||
			!strings.Contains(line, `source_principal="spiffe://cluster.local/ns/web/sa/frontend"`) ||
			!strings.Contains(line, `destination_principal="spiffe://cluster.local/ns/api/sa/backend"`) {
			t.Errorf("%s: istio_tcp_connections_opened_total = %q", p.reg.Name, line)
		}
		if !strings.Contains(line, `source_workload="frontend"`) {
			t.Errorf("%s: source workload not reported: %q", p.reg.Name, line)
		}
		if !strings.Contains(metricLine(m, "istio_tcp_received_bytes_total{", "mutual_tls"), "} 20") {
			t.Errorf("%s: received bytes: %q, want 20 (two lines)", p.reg.Name, metricLine(m, "istio_tcp_received_bytes_total{", ""))
		}
	}
}

// TestTCPAuthorization checks Istio's TCP semantics through real proxies:
// principals apply to TCP, an ALLOW rule that needs HTTP attributes never
// matches a TCP connection, and a DENY rule with HTTP fields keeps its
// TCP-only parts. A denied connection is closed before it reaches the app.
func TestTCPAuthorization(t *testing.T) {
	const allowGETFromFrontend = `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-get, namespace: api}
spec:
  rules:
  - from:
    - source: {principals: ["cluster.local/ns/web/sa/frontend"]}
    to:
    - operation: {methods: ["GET"]}
`
	const denyStrangerPOST = `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-stranger-post, namespace: api}
spec:
  action: DENY
  rules:
  - from:
    - source: {principals: ["cluster.local/ns/web/sa/stranger"]}
    to:
    - operation: {methods: ["POST"]}
`
	for _, tc := range []struct {
		name, client, policies string
		allowed                bool
	}{
		{"allowed principal", "frontend", allowFrontend, true},
		{"other principal", "stranger", allowFrontend, false},
		{"ALLOW rule with HTTP fields never matches TCP", "frontend", allowGETFromFrontend, false},
		{"DENY rule with HTTP fields keeps its TCP-only parts", "stranger", denyStrangerPOST, false},
		{"DENY rule for another principal", "frontend", denyStrangerPOST, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cli, _, appConns := tcpPair(t, tc.client, strictMesh+"---\n"+tc.policies)
			_, br := connect(t, cli, "backend.api:7000")
			greet, err := br.ReadString('\n')
			if tc.allowed {
				if greet != "220 line-echo ready\n" {
					t.Fatalf("allowed connection: greeting %q, %v", greet, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("denied connection got %q from the app", greet)
			}
			if n := appConns.Load(); n != 0 {
				t.Errorf("app got %d connections, want none", n)
			}
		})
	}
}

// TestTCPRefusedWithoutMeshIdentity: a client that dials the server
// proxy itself and asks for a TCP stream without a mesh certificate gets
// nothing; the app never sees it.
func TestTCPRefusedWithoutMeshIdentity(t *testing.T) {
	_, srv, appConns := tcpPair(t, "frontend", strictMesh+"---\n"+allowFrontend)
	raw, err := net.DialTimeout("tcp", srv.InboundAddr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(5 * time.Second))
	tc := tlsClientNoCert(raw, alpnTCP)
	if err := tc.Handshake(); err == nil {
		if _, err := tc.Read(make([]byte, 1)); err == nil {
			t.Fatal("a client without a certificate read from the TCP stream")
		}
	}
	if n := appConns.Load(); n != 0 {
		t.Errorf("app got %d connections, want none", n)
	}
}

// TestTCPCustom: a CUSTOM policy that applies to a TCP connection asks
// its gRPC provider with the connection's peers (Envoy's network
// ext_authz), fails closed when the provider is down unless failOpen, and
// an HTTP provider, which cannot judge a connection, denies unless
// failOpen.
func TestTCPCustom(t *testing.T) {
	fa := startAuthorizer(t)
	host, port := splitPort(t, fa.addr)
	policy := func(provider string) string {
		return `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext-tcp, namespace: api}
spec:
  action: CUSTOM
  provider: {name: ` + provider + `}
  rules:
  - from:
    - source: {namespaces: ["web"]}
`
	}
	providers := []*meshv1alpha1.MeshConfig_ExtensionProvider{
		grpcProvider("grpc", host, port, false, 0),
		grpcProvider("dead", closedAddr(t), 0, false, 0),
		grpcProvider("dead-open", closedAddr(t), 0, true, 0),
		httpProviderFor("http", host, port),
		httpProviderFor("http-open", host, port, withFailOpen),
	}
	for _, tc := range []struct {
		provider, client string
		allowed          bool
	}{
		{"grpc", "frontend", true},
		{"grpc", "stranger", false},
		{"dead", "frontend", false},
		{"dead-open", "frontend", true},
		{"http", "frontend", false},
		{"http-open", "frontend", true},
	} {
		t.Run(tc.provider+" "+tc.client, func(t *testing.T) {
			ca := meshtest.NewCA(t, testTD)
			appAddr, _ := tcpApp(t)
			srv := startProxyAt(t, ca, "api", "backend", appAddr, testLogger(t))
			cli := startProxy(t, ca, "web", tc.client, nil)
			m := mesh()
			m.ExtensionProviders = providers
			mustApply(t, srv, policyView(t, "s1", m, strictMesh+"---\n"+policy(tc.provider)))
			mustApply(t, cli, &xds.View{Version: "c1", Mesh: mesh(), Services: []registry.Service{serviceOf(srv)}})
			seen := fa.count()
			_, br := connect(t, cli, "backend.api:7000")
			greet, err := br.ReadString('\n')
			if got := err == nil && greet == "220 line-echo ready\n"; got != tc.allowed {
				t.Fatalf("allowed = %v (%q, %v), want %v", got, greet, err, tc.allowed)
			}
			if tc.provider == "grpc" {
				req := fa.last()
				if fa.count() == seen || req.GetAttributes().GetRequest().GetHttp() != nil ||
					req.GetAttributes().GetSource().GetPrincipal() != "spiffe://cluster.local/ns/web/sa/"+tc.client {
					t.Errorf("the provider was not asked about the connection as network ext_authz: %v", req)
				}
			}
		})
	}
}

// TestTCPStreamNeedsPreamble: a peer with a mesh certificate that asks
// for a TCP stream but does not open it as a client proxy does is closed
// before the app sees it, whatever it sends.
func TestTCPStreamNeedsPreamble(t *testing.T) {
	ca := meshtest.NewCA(t, testTD)
	appAddr, appConns := tcpApp(t)
	srv := startProxyAt(t, ca, "api", "backend", appAddr, testLogger(t))
	mustApply(t, srv, policyView(t, "s1", mesh(), strictMesh))
	for _, first := range []string{"hello\n", "zmesh-tcp/2 source-workload=x\n", strings.Repeat("a", 4096)} {
		raw, err := net.DialTimeout("tcp", srv.InboundAddr().String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		raw.SetDeadline(time.Now().Add(5 * time.Second))
		cert := ca.Issue(t, "web", "frontend", time.Hour)
		tc := tls.Client(raw, &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true,
			NextProtos: []string{alpnTCP}, MinVersion: tls.VersionTLS13})
		if err := tc.Handshake(); err != nil {
			t.Fatalf("handshake: %v", err)
		}
		io.WriteString(tc, first)
		if n, err := tc.Read(make([]byte, 64)); err == nil {
			t.Errorf("after %.20q the stream answered %d bytes", first, n)
		}
		raw.Close()
	}
	if n := appConns.Load(); n != 0 {
		t.Errorf("app got %d connections, want none", n)
	}
}

func metricLine(metrics, prefix, contains string) string {
	for _, l := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(l, prefix) && strings.Contains(l, contains) {
			return l
		}
	}
	return ""
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// tlsClientNoCert is a TLS client with no certificate that skips server
// verification (it only wants to see what the server lets through).
func tlsClientNoCert(c net.Conn, proto string) *tls.Conn {
	return tls.Client(c, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{proto}, MinVersion: tls.VersionTLS13})
}

// FuzzReadPreamble: whatever a peer sends first, the preamble reader
// returns an error or a workload name made only of DNS characters, and
// never loses a byte of the stream that follows a valid line.
func FuzzReadPreamble(f *testing.F) {
	f.Add([]byte("zmesh-tcp/1 source-workload=frontend\nGET / HTTP/1.1\r\n"))
	f.Add([]byte("zmesh-tcp/1 source-workload=\n"))
	f.Add([]byte("zmesh-tcp/1 source-workload=UPPER\nx"))
	f.Add([]byte("no newline"))
	f.Fuzz(func(t *testing.T, data []byte) {
		name, early, err := readPreamble(bytes.NewReader(data))
		if err != nil {
			return
		}
		if strings.ContainsFunc(name, func(r rune) bool {
			return !(r == '-' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z')
		}) || len(name) > 253 {
			t.Fatalf("workload %q", name)
		}
		i := bytes.IndexByte(data, '\n')
		if rest := data[i+1:]; !bytes.HasPrefix(rest, early) {
			t.Fatalf("early %q is not what followed the line (%q)", early, rest)
		}
	})
}

// TestTCPIdleTimeout: a stream with no byte either way for the idle
// timeout is closed on both sides; one that keeps talking is not.
func TestTCPIdleTimeout(t *testing.T) {
	ca := meshtest.NewCA(t, testTD)
	appAddr, _ := tcpApp(t)
	short := func(c *Config) { c.TCPIdleTimeout = 300 * time.Millisecond }
	srv := startProxyFor(t, ca, registry.Workload{Name: "backend", Namespace: "api", ServiceAccount: "backend",
		Labels: map[string]string{"app": "backend"}, Services: []string{"backend"}}, appAddr, short)
	cli := startProxyFor(t, ca, registry.Workload{Name: "frontend", Namespace: "web", ServiceAccount: "frontend",
		Labels: map[string]string{"app": "frontend"}, Services: []string{"frontend"}}, "127.0.0.1:1", short)
	mustApply(t, srv, policyView(t, "s1", mesh(), strictMesh))
	mustApply(t, cli, &xds.View{Version: "c1", Mesh: mesh(), Services: []registry.Service{serviceOf(srv)}})

	c, br := connect(t, cli, "backend.api:7000")
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	// Talking every 100 ms for a second keeps it open.
	for range 10 {
		time.Sleep(100 * time.Millisecond)
		io.WriteString(c, "still here\n")
		if got, err := br.ReadString('\n'); err != nil || got != "still here\n" {
			t.Fatalf("an active stream was cut: %q, %v", got, err)
		}
	}
	// Silence closes it.
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadString('\n'); err == nil {
		t.Fatal("read from an idle stream succeeded")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("idle stream closed after %s, want about 300 ms", d)
	}
}
