package proxy

import (
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/meshtest"
	"github.com/zmesh/zmesh/internal/registry"
	"github.com/zmesh/zmesh/internal/xds"
)

// egressConfig is Istio's "egress gateway with mutual TLS origination"
// (its docs' example, on external.example.com): the sidecars send the
// host's plaintext to the egress gateway over ISTIO_MUTUAL, the gateway
// originates mutual TLS with the client-credential Secret, and an
// AuthorizationPolicy on the gateway lets only web/frontend leave, only
// for that host.
const egressConfig = `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: istio-egressgateway, namespace: istio-system}
spec:
  selector: {istio: egressgateway}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [external.example.com]
    tls: {mode: ISTIO_MUTUAL}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: egressgateway, namespace: istio-system}
spec:
  host: istio-egressgateway.istio-system.svc.cluster.local
  trafficPolicy:
    portLevelSettings:
    - port: {number: 443}
      tls: {mode: ISTIO_MUTUAL, sni: external.example.com}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: direct-external-through-egress-gateway, namespace: istio-system}
spec:
  hosts: [external.example.com]
  gateways: [istio-egressgateway, mesh]
  http:
  - match: [{gateways: [mesh], port: 80}]
    route: [{destination: {host: istio-egressgateway.istio-system.svc.cluster.local, port: {number: 443}}}]
  - match: [{gateways: [istio-egressgateway], port: 443}]
    route: [{destination: {host: external.example.com, port: {number: 443}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: originate-mtls, namespace: istio-system}
spec:
  host: external.example.com
  trafficPolicy:
    portLevelSettings:
    - port: {number: 443}
      tls: {mode: MUTUAL, credentialName: client-credential, sni: external.example.com}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: egress-allow, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: egressgateway}}
  action: ALLOW
  rules:
  - from: [{source: {principals: [cluster.local/ns/web/sa/frontend]}}]
    to: [{operation: {hosts: [external.example.com]}}]
`

// startGateway runs a gateway proxy istio-system/NAME labelled
// istio=NAME with the credential directory credDir; tune may change its
// Config further.
func startGateway(t *testing.T, ca *meshtest.CA, name, credDir string, log *slog.Logger, tune func(*Config)) *testProxy {
	t.Helper()
	w := registry.Workload{Name: "istio-" + name, Namespace: "istio-system", ServiceAccount: "istio-" + name,
		Labels: map[string]string{"istio": name}, Services: []string{"istio-" + name}}
	return startProxyFor(t, ca, w, "127.0.0.1:1", func(c *Config) {
		c.CredentialDir = credDir
		c.Gateway = &GatewayConfig{Host: "127.0.0.1", Ports: map[uint32]string{}}
		c.AccessLogAll = true
		c.Logger = log
		if tune != nil {
			tune(c)
		}
	})
}

// TestEgressGateway: a workload's call to an external host goes through
// its sidecar to the egress gateway over mutual TLS (secure naming: the
// gateway's identity), and the gateway originates mutual TLS to the
// external server with its credential: the server sees the gateway's
// client certificate. The gateway's AuthorizationPolicy admits
// web/frontend and refuses web/stranger (403, the server never reached);
// its access log names the caller and the destination host.
func TestEgressGateway(t *testing.T) {
	ca := meshtest.NewCA(t, testTD)
	var reached atomic.Int32
	ext := countingTLSServer(t, &reached, "external.example.com")
	credDir := t.TempDir()
	cred := filepath.Join(credDir, "client-credential")
	if err := os.MkdirAll(cred, 0o755); err != nil {
		t.Fatal(err)
	}
	meshtest.WriteCert(t, ext.CA.IssueLeaf(t, "egress-gateway-client"), cred, "tls")
	ext.CA.WriteRoot(t, cred, "ca.crt")

	var logs syncBuffer
	gw := startGateway(t, ca, "egressgateway", credDir, slog.New(slog.NewJSONHandler(&logs, nil)), nil)
	frontend := startProxyFor(t, ca, registry.Workload{Name: "frontend", Namespace: "web", ServiceAccount: "frontend", Labels: map[string]string{"app": "frontend"}}, "127.0.0.1:1", nil)
	stranger := startProxyFor(t, ca, registry.Workload{Name: "stranger", Namespace: "web", ServiceAccount: "stranger", Labels: map[string]string{"app": "stranger"}}, "127.0.0.1:1", nil)

	external := registry.Service{Hostname: "external.example.com", Namespace: "istio-system",
		Ports:     []registry.Port{{Number: 80, Name: "http", Protocol: "HTTP"}, {Number: 443, Name: "http-origination", Protocol: "HTTP"}},
		Endpoints: []registry.Endpoint{{Address: ext.Addr, Workload: "istio-system/external"}}}
	gwSvc := serviceOf(gw)
	gwSvc.Hostname = "istio-egressgateway.istio-system.svc.cluster.local"
	svcs := []registry.Service{gwSvc, external}
	snap := config.NewSnapshot("1", parse(t, egressConfig))
	for _, tp := range []*testProxy{gw, frontend, stranger} {
		mustApply(t, tp, xds.Build(snap, svcs, mesh(), xds.Proxy{ID: tp.reg.Key(), Workload: tp.reg, Gateway: tp == gw}))
	}

	code, body := get(t, proxyClient(t, frontend), "http://external.example.com/status/200?q=1")
	if code != 200 || echoField(body, "client") != "egress-gateway-client" || echoField(body, "sni") != "external.example.com" || echoField(body, "path") != "/status/200?q=1" {
		t.Fatalf("frontend through the egress gateway: %d %q; want the server to see the gateway's client certificate", code, body)
	}
	if n := reached.Load(); n != 1 {
		t.Fatalf("external server reached %d times", n)
	}
	code, body = get(t, proxyClient(t, stranger), "http://external.example.com/status/200")
	if code != http.StatusForbidden || reached.Load() != 1 {
		t.Fatalf("stranger through the egress gateway: %d %q, external reached %d times; want 403 and not reached", code, body, reached.Load())
	}
	// The gateway's access log says who left for where.
	deadline := time.Now().Add(2 * time.Second)
	for !strings.Contains(logs.String(), `"source":"spiffe://cluster.local/ns/web/sa/stranger"`) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	var allowed, denied bool
	for _, l := range strings.Split(logs.String(), "\n") {
		if !strings.Contains(l, `"msg":"access"`) || !strings.Contains(l, `"direction":"gateway"`) {
			continue
		}
		allowed = allowed || strings.Contains(l, `"source":"spiffe://cluster.local/ns/web/sa/frontend"`) && strings.Contains(l, `"destination":"external.example.com"`) && strings.Contains(l, `"status":200`)
		denied = denied || strings.Contains(l, `"source":"spiffe://cluster.local/ns/web/sa/stranger"`) && strings.Contains(l, `"status":403`)
	}
	if !allowed || !denied {
		t.Errorf("gateway access log lacks the allowed (%v) or the denied (%v) call:\n%s", allowed, denied, logs.String())
	}
}

// countingTLSServer is a meshtest.TLSServer (its own CA, on loopback;
// it verifies a client certificate when one is given) that counts the
// requests it gets.
func countingTLSServer(t *testing.T, n *atomic.Int32, dns ...string) *meshtest.TLSServer {
	t.Helper()
	ca := meshtest.NewCA(t, "external.test")
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		client := "none"
		if len(r.TLS.PeerCertificates) > 0 {
			client = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		fmt.Fprintf(w, "sni=%s\nclient=%s\npath=%s\n", r.TLS.ServerName, client, r.URL.RequestURI())
	}))
	srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{ca.IssueLeaf(t, "server", dns...)},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    ca.Pool(),
		MinVersion:   tls.VersionTLS12,
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return &meshtest.TLSServer{Server: srv, CA: ca, Addr: srv.Listener.Addr().String()}
}

const ingressConfig = `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: ingressgateway, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*/httpbin.example.com"]
    tls: {httpsRedirect: true}
  - port: {number: 8080, name: http-plain, protocol: HTTP}
    hosts: ["api/httpbin.example.com"]
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [httpbin.example.com]
    tls: {mode: SIMPLE, credentialName: httpbin-credential}
  - port: {number: 8443, name: https-mutual, protocol: HTTPS}
    hosts: [httpbin.example.com]
    tls: {mode: MUTUAL, credentialName: httpbin-credential, subjectAltNames: [client.example.com]}
  - port: {number: 8444, name: https-mutual-any, protocol: HTTPS}
    hosts: [httpbin.example.com]
    tls: {mode: MUTUAL, credentialName: httpbin-credential}
  - port: {number: 9443, name: https-mesh, protocol: HTTPS}
    hosts: [httpbin.example.com]
    tls: {mode: ISTIO_MUTUAL}
  - port: {number: 81, name: http-unmapped, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: mesh-only, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  rules:
  - to: [{operation: {notPaths: ["/mesh-only*"]}}]
  - from: [{source: {principals: [cluster.local/ns/web/sa/frontend]}}]
    to: [{operation: {paths: ["/mesh-only*"]}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin, namespace: api}
spec:
  hosts: [httpbin.example.com]
  gateways: [istio-system/ingressgateway]
  http:
  - route: [{destination: {host: backend.api.svc.cluster.local}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-admin-from-loopback, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  action: DENY
  rules:
  - from: [{source: {ipBlocks: [127.0.0.1/32]}}]
    to: [{operation: {paths: ["/admin*"]}}]
`

// TestIngressGateway: the gateway terminates HTTPS with its
// credentialName's certificate (SIMPLE), requires a client certificate of
// the credential's CA naming client.example.com (MUTUAL), redirects plain
// HTTP where httpsRedirect says so, routes what its VirtualService binds
// to a mesh service over mutual TLS with its own identity, decides by
// the caller's address where it has no mesh identity, and serves no
// privileged port it was not given an address for.
func TestIngressGateway(t *testing.T) {
	ca := meshtest.NewCA(t, testTD)
	backend := startProxy(t, ca, "api", "backend", echoApp(t))
	web := meshtest.NewCA(t, "ingress.test")
	credDir := t.TempDir()
	cred := filepath.Join(credDir, "httpbin-credential")
	if err := os.MkdirAll(cred, 0o755); err != nil {
		t.Fatal(err)
	}
	meshtest.WriteCert(t, web.IssueLeaf(t, "httpbin", "httpbin.example.com"), cred, "tls")
	web.WriteRoot(t, cred, "ca.crt")

	gw := startGateway(t, ca, "ingressgateway", credDir, testLogger(t), func(c *Config) {
		c.Gateway.Ports = map[uint32]string{80: "127.0.0.1:0", 8080: "127.0.0.1:0", 443: "127.0.0.1:0", 8443: "127.0.0.1:0", 8444: "127.0.0.1:0", 9443: "127.0.0.1:0"}
	})
	svcs := []registry.Service{serviceOf(backend)}
	snap := config.NewSnapshot("1", parse(t, ingressConfig))
	mustApply(t, backend, xds.Build(snap, svcs, mesh(), xds.Proxy{ID: backend.reg.Key(), Workload: backend.reg}))
	mustApply(t, gw, xds.Build(snap, svcs, mesh(), xds.Proxy{ID: gw.reg.Key(), Workload: gw.reg, Gateway: true}))
	addr := func(port uint32) string {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if a := gw.GatewayAddr(port); a != nil {
				return a.String()
			}
		}
		t.Fatalf("gateway port %d not listening", port)
		return ""
	}
	client := func(certs ...tls.Certificate) *http.Client {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: web.Pool(), ServerName: "httpbin.example.com", Certificates: certs}}
		t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr, Timeout: 5 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	do := func(c *http.Client, url, host string) (int, string, http.Header, error) {
		req, _ := http.NewRequest("GET", url, nil)
		req.Host = host
		resp, err := c.Do(req)
		if err != nil {
			return 0, "", nil, err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header, nil
	}
	gwID := "URI=spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway"

	t.Run("SIMPLE terminates and routes to the mesh", func(t *testing.T) {
		code, body, _, err := do(client(), "https://"+addr(443)+"/headers?x=1", "httpbin.example.com")
		if err != nil || code != 200 || echoField(body, "host") != "httpbin.example.com" || echoField(body, "path") != "/headers?x=1" || !strings.Contains(echoField(body, "xfcc"), gwID) {
			t.Fatalf("%d %q %v: want the backend to see the gateway's identity", code, body, err)
		}
	})
	t.Run("debug config lists the ports", func(t *testing.T) {
		a := addr(443)
		for _, dp := range gw.debugConfig().GatewayPorts {
			if dp.Port == 443 {
				if dp.Listen != a || len(dp.Servers) != 1 || dp.Servers[0].TLSMode != "SIMPLE httpbin-credential" || dp.Servers[0].Gateway != "istio-system/ingressgateway" {
					t.Errorf("port 443: %+v", dp)
				}
				return
			}
		}
		t.Errorf("no port 443 in %+v", gw.debugConfig().GatewayPorts)
	})
	t.Run("SIMPLE refuses a host no server takes", func(t *testing.T) {
		c := client()
		c.Transport.(*http.Transport).TLSClientConfig.ServerName = "other.example.com"
		c.Transport.(*http.Transport).TLSClientConfig.InsecureSkipVerify = true
		if _, _, _, err := do(c, "https://"+addr(443)+"/", "other.example.com"); err == nil {
			t.Fatal("handshake for another host succeeded")
		}
	})
	t.Run("MUTUAL without a client certificate", func(t *testing.T) {
		if code, _, _, err := do(client(), "https://"+addr(8443)+"/", "httpbin.example.com"); err == nil {
			t.Fatalf("answered %d without a client certificate", code)
		}
	})
	t.Run("MUTUAL with a certificate naming another client", func(t *testing.T) {
		if code, _, _, err := do(client(web.IssueLeaf(t, "x", "other-client.example.com")), "https://"+addr(8443)+"/", "httpbin.example.com"); err == nil {
			t.Fatalf("answered %d to a client subjectAltNames does not name", code)
		}
	})
	t.Run("MUTUAL with a certificate of another CA", func(t *testing.T) {
		other := meshtest.NewCA(t, "other.test")
		if code, _, _, err := do(client(other.IssueLeaf(t, "x", "client.example.com")), "https://"+addr(8443)+"/", "httpbin.example.com"); err == nil {
			t.Fatalf("answered %d to a client certificate of another CA", code)
		}
	})
	t.Run("MUTUAL with the client's certificate", func(t *testing.T) {
		code, body, _, err := do(client(web.IssueLeaf(t, "client", "client.example.com")), "https://"+addr(8443)+"/m", "httpbin.example.com")
		if err != nil || code != 200 || echoField(body, "path") != "/m" {
			t.Fatalf("%d %q %v", code, body, err)
		}
	})
	t.Run("a MUTUAL port's client certificate is no mesh identity", func(t *testing.T) {
		spoof := web.IssueURI(t, "spiffe://cluster.local/ns/web/sa/frontend", time.Hour)
		code, _, _, err := do(client(spoof), "https://"+addr(8444)+"/mesh-only", "httpbin.example.com")
		if err != nil || code != http.StatusForbidden {
			t.Fatalf("%d %v: a certificate of the credential's CA naming a mesh identity passed for it", code, err)
		}
		if code, _, _, err := do(client(spoof), "https://"+addr(8444)+"/other", "httpbin.example.com"); err != nil || code != 200 {
			t.Fatalf("%d %v", code, err)
		}
	})
	meshClient := func(cert ...tls.Certificate) *http.Client {
		// The gateway presents its SPIFFE certificate, which names no
		// DNS host: the client checks nothing of it here; what is tested
		// is what the gateway makes of the caller's.
		tr := &http.Transport{TLSClientConfig: &tls.Config{ServerName: "httpbin.example.com", InsecureSkipVerify: true, Certificates: cert}}
		t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr, Timeout: 5 * time.Second}
	}
	t.Run("ISTIO_MUTUAL port: the caller's mesh identity decides", func(t *testing.T) {
		code, body, _, err := do(meshClient(ca.Issue(t, "web", "frontend", time.Hour)), "https://"+addr(9443)+"/mesh-only", "httpbin.example.com")
		if err != nil || code != 200 || !strings.Contains(echoField(body, "xfcc"), gwID) || strings.Contains(echoField(body, "xfcc"), "sa/frontend") {
			t.Fatalf("frontend: %d %q %v; want 200 and the backend to see the gateway's identity only", code, body, err)
		}
		if code, _, _, err := do(meshClient(ca.Issue(t, "web", "stranger", time.Hour)), "https://"+addr(9443)+"/mesh-only", "httpbin.example.com"); err != nil || code != http.StatusForbidden {
			t.Fatalf("stranger: %d %v, want 403", code, err)
		}
		if code, _, _, err := do(meshClient(), "https://"+addr(9443)+"/", "httpbin.example.com"); err == nil {
			t.Fatalf("answered %d without a mesh certificate", code)
		}
		if code, _, _, err := do(meshClient(web.IssueURI(t, "spiffe://cluster.local/ns/web/sa/frontend", time.Hour)), "https://"+addr(9443)+"/", "httpbin.example.com"); err == nil {
			t.Fatalf("answered %d to a certificate of another CA", code)
		}
	})
	t.Run("httpsRedirect", func(t *testing.T) {
		code, _, h, err := do(client(), "http://"+addr(80)+"/a?b=c", "httpbin.example.com")
		if err != nil || code != http.StatusMovedPermanently || h.Get("Location") != "https://httpbin.example.com/a?b=c" {
			t.Fatalf("%d %v %v", code, h, err)
		}
	})
	t.Run("plain HTTP routes", func(t *testing.T) {
		code, body, _, err := do(client(), "http://"+addr(8080)+"/p", "httpbin.example.com")
		if err != nil || code != 200 || echoField(body, "path") != "/p" {
			t.Fatalf("%d %q %v", code, body, err)
		}
	})
	t.Run("unknown host", func(t *testing.T) {
		if code, _, _, err := do(client(), "http://"+addr(8080)+"/", "evil.example.com"); err != nil || code != http.StatusNotFound {
			t.Fatalf("%d %v, want 404", code, err)
		}
	})
	t.Run("policy by the caller's address", func(t *testing.T) {
		if code, _, _, err := do(client(), "https://"+addr(443)+"/admin/x", "httpbin.example.com"); err != nil || code != http.StatusForbidden {
			t.Fatalf("%d %v, want 403", code, err)
		}
	})
	t.Run("privileged port without an address is not served", func(t *testing.T) {
		if a := gw.GatewayAddr(81); a != nil {
			t.Fatalf("port 81 served at %s", a)
		}
	})
	t.Run("a push without the Gateway closes its ports", func(t *testing.T) {
		a := addr(8080)
		mustApply(t, gw, xds.Build(config.NewSnapshot("2", nil), svcs, mesh(), xds.Proxy{ID: gw.reg.Key(), Workload: gw.reg, Gateway: true}))
		for deadline := time.Now().Add(5 * time.Second); gw.GatewayAddr(8080) != nil && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
		if _, _, _, err := do(client(), "http://"+a+"/", "httpbin.example.com"); err == nil {
			t.Fatal("the closed port still answers")
		}
	})
}

// TestGatewayRefusesStreams: a gateway has no app to relay TCP to, so its
// mesh listener closes a client proxy's TCP stream (ALPN) and a
// plaintext stream instead of relaying them anywhere.
func TestGatewayRefusesStreams(t *testing.T) {
	ca := meshtest.NewCA(t, testTD)
	// Something answers at the address a sidecar would relay to: if the
	// gateway relayed, the bytes would come back.
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { echo.Close() })
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	w := registry.Workload{Name: "istio-ingressgateway", Namespace: "istio-system", ServiceAccount: "istio-ingressgateway", Labels: map[string]string{"istio": "ingressgateway"}}
	gw := startProxyFor(t, ca, w, echo.Addr().String(), func(c *Config) {
		c.Gateway = &GatewayConfig{Host: "127.0.0.1"}
		c.ProtocolDetectionTimeout = 50 * time.Millisecond
	})
	// The Gateway alone: no policy that would refuse a stream anyway.
	gateway, _, _ := strings.Cut(ingressConfig, "\n---\n")
	snap := config.NewSnapshot("1", parse(t, gateway))
	mustApply(t, gw, xds.Build(snap, nil, mesh(), xds.Proxy{ID: gw.reg.Key(), Workload: gw.reg, Gateway: true}))

	cert := ca.Issue(t, "web", "frontend", time.Hour)
	tc, err := tls.Dial("tcp", gw.InboundAddr().String(), &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{cert}, NextProtos: []string{alpnTCP}})
	if err == nil {
		defer tc.Close()
		tc.SetDeadline(time.Now().Add(5 * time.Second))
		tc.Write([]byte("hello"))
		if n, err := tc.Read(make([]byte, 16)); err == nil {
			t.Fatalf("a TCP stream to the gateway got %d bytes back", n)
		}
	}
	c := dialRaw(t, gw.InboundAddr())
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte("\x00\x01binary, not HTTP\r\n"))
	if n, err := c.Read(make([]byte, 16)); err == nil {
		t.Fatalf("a plaintext stream to the gateway got %d bytes back", n)
	}
}
