package e2e

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zmesh/zmesh/internal/meshtest"
)

// TestDestinationRuleTLS runs Istio's "Egress TLS Origination" with a
// real HTTPS server on loopback, with a CA of its own, standing for the
// outside host: the app calls http://HOST/ in plaintext, and the
// DestinationRule makes its proxy originate TLS (SIMPLE: the server sees
// no client certificate; MUTUAL: it sees the one the rule names), while a
// rule whose subjectAltNames the server's certificate does not carry fails
// closed. A DISABLE rule with a workloadSelector sends one workload's
// calls to the STRICT backend in plaintext, which the backend refuses,
// while every other caller keeps automatic mTLS.
func TestDestinationRuleTLS(t *testing.T) {
	ext := meshtest.NewTLSServer(t, "simple.example.test", "mutual.example.test", "badsan.example.test")
	certs := t.TempDir()
	caFile := ext.CA.WriteRoot(t, certs, "ca.pem")
	certFile, keyFile := meshtest.WriteCert(t, ext.CA.IssueLeaf(t, "egress-client"), certs, "client")
	_, port, _ := strings.Cut(ext.Addr, ":")

	yaml := fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external, namespace: egress}
spec:
  hosts: [simple.example.test, mutual.example.test, badsan.example.test]
  ports: [{number: 80, name: http, protocol: HTTP, targetPort: %[1]s}]
  resolution: STATIC
  location: MESH_EXTERNAL
  endpoints: [{address: 127.0.0.1}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: simple, namespace: egress}
spec:
  host: simple.example.test
  trafficPolicy:
    portLevelSettings:
    - port: {number: 80}
      tls: {mode: SIMPLE, caCertificates: %[2]s}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: mutual, namespace: egress}
spec:
  host: mutual.example.test
  trafficPolicy:
    tls: {mode: MUTUAL, caCertificates: %[2]s, clientCertificate: %[3]s, privateKey: %[4]s}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: badsan, namespace: egress}
spec:
  host: badsan.example.test
  trafficPolicy:
    tls: {mode: SIMPLE, caCertificates: %[2]s, subjectAltNames: [someone-else.example.test]}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: stranger-plaintext, namespace: web}
spec:
  host: backend.api.svc.cluster.local
  workloadSelector: {matchLabels: {app: stranger}}
  trafficPolicy:
    tls: {mode: DISABLE}
`, port, caFile, certFile, keyFile)
	m := startMeshWith(t, map[string]string{"destinationrules.yaml": yaml})
	front, stranger := m.w("web/frontend").app, m.w("web/stranger").app

	// The mesh converges on the rules; the first call may precede them.
	waitStatus(t, front, "simple.example.test/hello", http.StatusOK, 10*time.Second)
	r := call(t, front, "simple.example.test/hello")
	if !strings.Contains(r.Body, "sni=simple.example.test\n") || !strings.Contains(r.Body, "client=none\n") || !strings.Contains(r.Body, "path=/hello\n") {
		t.Errorf("SIMPLE: the server saw %q, want SNI simple.example.test and no client certificate", r.Body)
	}
	r = call(t, front, "mutual.example.test/")
	if r.Status != http.StatusOK || !strings.Contains(r.Body, "client=egress-client\n") {
		t.Errorf("MUTUAL: %d %q, want the server to see client certificate egress-client", r.Status, r.Body)
	}
	if r = call(t, front, "badsan.example.test/"); r.Status != http.StatusServiceUnavailable {
		t.Errorf("SIMPLE with subjectAltNames the server does not have: %d %q, want 503", r.Status, r.Body)
	}

	if r = call(t, front, "backend.api.svc.cluster.local/"); r.Status != http.StatusOK {
		t.Errorf("frontend to backend: %d %q", r.Status, r.Body)
	}
	// The stranger would get 403 from the backend's policy over mTLS; its
	// rule makes it speak plaintext, which the STRICT backend refuses
	// before any policy runs.
	if r = call(t, stranger, "backend.api.svc.cluster.local/"); r.Status != http.StatusServiceUnavailable {
		t.Errorf("stranger (DISABLE rule) to STRICT backend: %d %q, want 503", r.Status, r.Body)
	}

	// Removing the MUTUAL rule leaves plaintext toward the HTTPS server,
	// which then fails: the rule was what made the calls work.
	writeFile(t, filepath.Join(m.dir, "destinationrules.yaml"), strings.Replace(yaml, "host: mutual.example.test", "host: unused.example.test", 1))
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := tryCall(front, "mutual.example.test/")
		if err == nil && r.Status != http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("mutual.example.test still answers %d %v after the rule was removed", r.Status, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
