package e2e

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zmesh/zmesh/internal/meshtest"
)

// TestEgressGateway runs Istio's "egress gateway with mutual TLS
// origination" with the real binary: the quickstart mesh (`zmesh up`),
// an egress gateway started as an operator would (`zmesh proxy --gateway`,
// a bootstrap token, a credential directory), and an HTTPS server on
// loopback with a CA of its own for the outside host. The frontend's call
// to http://external.example.test/ leaves through its sidecar to the
// gateway over mutual TLS, and the gateway originates mutual TLS with its
// credential: the server sees the gateway's client certificate. The
// gateway's AuthorizationPolicy refuses the stranger (403); its access
// log records who left for where.
func TestEgressGateway(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a mesh and a gateway")
	}
	ext := meshtest.NewTLSServer(t, "external.example.test")
	_, port, _ := strings.Cut(ext.Addr, ":")
	credDir := t.TempDir()
	cred := filepath.Join(credDir, "client-credential")
	if err := os.MkdirAll(cred, 0o755); err != nil {
		t.Fatal(err)
	}
	meshtest.WriteCert(t, ext.CA.IssueLeaf(t, "egress-gateway-client"), cred, "tls")
	ext.CA.WriteRoot(t, cred, "ca.crt")

	yaml := fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external, namespace: istio-system}
spec:
  hosts: [external.example.test]
  ports:
  - {number: 80, name: http, protocol: HTTP, targetPort: %[1]s}
  - {number: 443, name: http-origination, protocol: HTTP, targetPort: %[1]s}
  resolution: STATIC
  location: MESH_EXTERNAL
  endpoints: [{address: 127.0.0.1}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: istio-egressgateway, namespace: istio-system}
spec:
  selector: {istio: egressgateway}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [external.example.test]
    tls: {mode: ISTIO_MUTUAL}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: egressgateway, namespace: istio-system}
spec:
  host: istio-egressgateway.istio-system.svc.cluster.local
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL, sni: external.example.test}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: external-through-egress-gateway, namespace: istio-system}
spec:
  hosts: [external.example.test]
  gateways: [istio-egressgateway, mesh]
  http:
  - match: [{gateways: [mesh], port: 80}]
    route: [{destination: {host: istio-egressgateway.istio-system.svc.cluster.local, port: {number: 443}}}]
  - match: [{gateways: [istio-egressgateway], port: 443}]
    route: [{destination: {host: external.example.test, port: {number: 443}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: originate-mtls, namespace: istio-system}
spec:
  host: external.example.test
  trafficPolicy:
    portLevelSettings:
    - port: {number: 443}
      tls: {mode: MUTUAL, credentialName: client-credential}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: egress, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: egressgateway}}
  rules:
  - from: [{source: {principals: [cluster.local/ns/web/sa/frontend]}}]
    to: [{operation: {hosts: [external.example.test]}}]
`, port)
	m := startMeshWith(t, map[string]string{"egress.yaml": yaml})
	data := meshDataDir(t, m)
	_, token := createToken(t, data, "istio-system", "istio-egressgateway")
	gw := startProcess(t, "egress gateway", zmeshBin, "proxy", "--gateway",
		"--controlplane", m.grpc, "--root-cert", filepath.Join(data, "root-cert.pem"), "--token-file", token,
		"--name", "istio-egressgateway", "--namespace", "istio-system", "--service-account", "istio-egressgateway",
		"--labels", "istio=egressgateway", "--services", "istio-egressgateway",
		"--inbound", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--credential-dir", credDir, "--access-log",
		// 443 is served over the mesh (ISTIO_MUTUAL at the inbound
		// listener); its own port goes somewhere unprivileged.
		"--gateway-port", "443=127.0.0.1:0")
	front, stranger := m.w("web/frontend").app, m.w("web/stranger").app

	// The sidecars learn of the gateway when it registers.
	waitStatus(t, front, "external.example.test/leave", http.StatusOK, 20*time.Second)
	r := call(t, front, "external.example.test/leave?x=1")
	if !strings.Contains(r.Body, "client=egress-gateway-client") || !strings.Contains(r.Body, "path=/leave?x=1") {
		t.Errorf("the external server saw %q, want the gateway's client certificate", r.Body)
	}
	if r := call(t, stranger, "external.example.test/leave"); r.Status != http.StatusForbidden {
		t.Errorf("stranger through the egress gateway: %d %q, want 403", r.Status, r.Body)
	}
	waitFor(t, "the gateway's access log of both calls", 5*time.Second, gw.Logs, func() bool {
		logs := gw.Logs()
		return strings.Contains(logs, "source=spiffe://cluster.local/ns/web/sa/frontend destination=external.example.test") &&
			strings.Contains(logs, "source=spiffe://cluster.local/ns/web/sa/stranger")
	})
}

// startProcess runs argv until the test ends (SIGTERM, then SIGKILL after
// 5 s), its output kept for Logs.
func startProcess(t *testing.T, name string, argv ...string) *nsProcess {
	t.Helper()
	p := &nsProcess{done: make(chan struct{})}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Env = append(os.Environ(), "HTTP_PROXY=", "http_proxy=")
	p.cmd.Stdout, p.cmd.Stderr = p, p
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			t.Errorf("%s did not stop within 5s of SIGTERM; killing it", name)
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}
