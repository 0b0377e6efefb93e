package e2e

import (
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMeshConfigEditedWhileRunning: editing the MeshConfig file given to
// `zmesh up --mesh-config` reaches every proxy without a restart, as an
// edited mesh ConfigMap does in Istio: switching outboundTrafficPolicy to
// REGISTRY_ONLY stops passthrough to a host outside the mesh. A malformed
// edit is refused with a log line, and the last good settings stay.
func TestMeshConfigEditedWhileRunning(t *testing.T) {
	outside := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "outside")
	}))
	t.Cleanup(outside.Close)
	outsideHost := strings.TrimPrefix(outside.URL, "http://")

	meshConfig := filepath.Join(t.TempDir(), "mesh.yaml")
	writeFile(t, meshConfig, "outboundTrafficPolicy: {mode: ALLOW_ANY}\n")
	m := startMesh(t, "--mesh-config", meshConfig)
	frontend := m.w("web/frontend")
	if r, err := viaOutbound(frontend.outbound, outsideHost, "/", nil); err != nil || r.status != 200 || r.body != "outside" {
		t.Fatalf("ALLOW_ANY: passthrough got %d %q %v", r.status, r.body, err)
	}

	writeFile(t, meshConfig, "outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n")
	waitOutbound(t, frontend.outbound, outsideHost, "/", nil, http.StatusBadGateway, 5*time.Second)
	if r, err := viaOutbound(frontend.outbound, backendHost, "/", nil); err != nil || r.status != 200 {
		t.Errorf("REGISTRY_ONLY: the mesh service answered %d %v", r.status, err)
	}

	writeFile(t, meshConfig, "outboundTrafficPolicy: {mode: ALLOW_ANY}\nnotAMeshConfigField: true\n")
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(m.Logs(), "mesh config rejected") {
		if time.Now().After(deadline) {
			t.Fatalf("no rejection logged for a malformed mesh config; logs:\n%s", m.Logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if r, err := viaOutbound(frontend.outbound, outsideHost, "/", nil); err != nil || r.status != http.StatusBadGateway {
		t.Errorf("after a malformed edit, passthrough got %d %v: the last good REGISTRY_ONLY was lost", r.status, err)
	}
	if t.Failed() {
		t.Logf("mesh logs:\n%s", m.Logs())
	}
}
