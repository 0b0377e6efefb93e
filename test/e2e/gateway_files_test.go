package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/zmesh/zmesh/internal/meshtest"
)

// TestIngressGatewayCertificateFiles runs Istio's older file-mounted
// gateway certificates with the real binary: a Gateway whose server names
// serverCertificate and privateKey under the directory the operator gave
// the gateway (--cert-file-dir) is served; rewriting the files serves
// the new certificate without a restart; a server whose files lie
// outside that directory refuses its handshakes while the other serves.
func TestIngressGatewayCertificateFiles(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a mesh and a gateway")
	}
	web := meshtest.NewCA(t, "web.test")
	certs, outside := t.TempDir(), t.TempDir()
	meshtest.WriteCert(t, web.IssueLeaf(t, "files-1", "files.example.test"), certs, "tls")
	meshtest.WriteCert(t, web.IssueLeaf(t, "undeclared", "files.example.test"), outside, "tls")
	yaml := fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: files, namespace: web}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 9443, name: https, protocol: HTTPS}
    hosts: [files.example.test]
    tls: {mode: SIMPLE, serverCertificate: %[1]s/tls.crt, privateKey: %[1]s/tls.key}
  - port: {number: 9444, name: https-undeclared, protocol: HTTPS}
    hosts: [files.example.test]
    tls: {mode: SIMPLE, serverCertificate: %[2]s/tls.crt, privateKey: %[2]s/tls.key}
`, certs, outside)
	m := startMeshWith(t, map[string]string{"gateway.yaml": yaml})
	data := meshDataDir(t, m)
	_, token := createToken(t, data, "istio-system", "istio-ingressgateway")
	served, undeclared := freeAddr(t), freeAddr(t)
	gw := startProcess(t, "ingress gateway", zmeshBin, "proxy", "--gateway",
		"--controlplane", m.grpc, "--root-cert", filepath.Join(data, "root-cert.pem"), "--token-file", token,
		"--name", "istio-ingressgateway", "--namespace", "istio-system", "--service-account", "istio-ingressgateway",
		"--labels", "istio=ingressgateway", "--services", "istio-ingressgateway",
		"--inbound", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--cert-file-dir", certs,
		"--gateway-port", "9443="+served, "--gateway-port", "9444="+undeclared)

	waitCN := func(want string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			cn, err := servedCN(served, "files.example.test", web)
			if err == nil && cn == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the gateway serves %q (%v), want %q; logs:\n%s", cn, err, want, gw.Logs())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitCN("files-1")
	if cn, err := servedCN(undeclared, "files.example.test", web); err == nil {
		t.Errorf("a certificate outside --cert-file-dir was served (%q)", cn)
	}
	// Rotation in place: no restart, no push.
	next := t.TempDir()
	meshtest.WriteCert(t, web.IssueLeaf(t, "files-2", "files.example.test"), next, "tls")
	for _, f := range []string{"tls.crt", "tls.key"} {
		if err := os.Rename(filepath.Join(next, f), filepath.Join(certs, f)); err != nil {
			t.Fatal(err)
		}
	}
	waitCN("files-2")
}
