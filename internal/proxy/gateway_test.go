package proxy

import (
	"crypto/tls"
	"fmt"
	"log/slog"
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
