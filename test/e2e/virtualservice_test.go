package e2e

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// backendVersions are two more workloads, backend-v1 and backend-v2,
// each its own service, for VirtualServices to split traffic between.
const backendVersions = `apiVersion: zmesh.dev/v1alpha1
kind: Workload
metadata: {name: backend-v1, namespace: api}
spec:
  serviceAccount: backend
  labels: {app: backend, version: v1}
  services: [backend-v1]
  command: [zmesh, echo, --listen, "127.0.0.1:$(PORT)", --name, backend-v1]
---
apiVersion: zmesh.dev/v1alpha1
kind: Workload
metadata: {name: backend-v2, namespace: api}
spec:
  serviceAccount: backend
  labels: {app: backend, version: v2}
  services: [backend-v2]
  command: [zmesh, echo, --listen, "127.0.0.1:$(PORT)", --name, backend-v2]
`

const splitVS = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: backend, namespace: api}
spec:
  hosts: [backend]
  http:
  - route:
    - {destination: {host: backend-v1}, weight: 80}
    - {destination: {host: backend-v2}, weight: 20}
`

// TestVirtualServiceThroughTheControlPlane: a VirtualService in the mesh
// directory reaches the frontend's proxy through the control plane and
// splits its calls to backend 80/20 between backend-v1 and backend-v2,
// over mTLS with the backend's policy still deciding (the stranger stays
// denied); an edit while running shifts the traffic, and a malformed edit
// keeps the last good routes.
func TestVirtualServiceThroughTheControlPlane(t *testing.T) {
	m := startMeshWith(t, map[string]string{"versions.yaml": backendVersions, "backend-vs.yaml": splitVS})
	frontend := m.w("web/frontend").outbound
	call := func() (name, path string) {
		t.Helper()
		r, err := viaOutbound(frontend, backendHost, "/", nil)
		if err != nil || r.status != http.StatusOK {
			t.Fatalf("frontend → backend: %d %q %v", r.status, r.body, err)
		}
		var e struct {
			Name    string              `json:"name"`
			Path    string              `json:"path"`
			Headers map[string][]string `json:"headers"`
		}
		if err := json.Unmarshal([]byte(r.body), &e); err != nil {
			t.Fatalf("echo answer %q: %v", r.body, err)
		}
		if xfcc := strings.Join(e.Headers["X-Forwarded-Client-Cert"], ","); !strings.Contains(xfcc, "spiffe://cluster.local/ns/web/sa/frontend") {
			t.Fatalf("%s did not see the frontend's identity: %q", e.Name, xfcc)
		}
		return e.Name, e.Path
	}
	name := func() string {
		t.Helper()
		n, _ := call()
		return n
	}
	const n = 1000
	counts := map[string]int{}
	for i := 0; i < n; i++ {
		counts[name()]++
	}
	share := float64(counts["backend-v1"]) / n
	t.Logf("split over %d calls: %v", n, counts)
	if share < 0.76 || share > 0.84 || counts["backend-v1"]+counts["backend-v2"] != n {
		t.Errorf("backend-v1 took %.1f%% of the calls (%v), want 80%% ± 4 points", 100*share, counts)
	}
	if r, err := viaOutbound(m.w("web/stranger").outbound, backendHost, "/", nil); err != nil || r.status != http.StatusForbidden {
		t.Errorf("stranger → backend via the VirtualService: %d %v, want 403 from backend's policy", r.status, err)
	}

	vsFile := filepath.Join(m.dir, "backend-vs.yaml")
	// The edit sends everything to backend-v2, under /edited (so that
	// the test knows when it is in force).
	writeFile(t, vsFile, strings.NewReplacer("weight: 80", "weight: 0", "weight: 20", "weight: 100", "  - route:", "  - rewrite: {uri: /edited}\n    route:").Replace(splitVS))
	deadline := time.Now().Add(10 * time.Second)
	for _, path := call(); path != "/edited"; _, path = call() {
		if time.Now().After(deadline) {
			t.Fatal("the edit to route everything to backend-v2 did not apply")
		}
		time.Sleep(25 * time.Millisecond)
	}
	for i := 0; i < 50; i++ {
		if got := name(); got != "backend-v2" {
			t.Fatalf("after the edit, call %d went to %s", i, got)
		}
	}

	writeFile(t, vsFile, strings.Replace(splitVS, "weight: 80", "weight: -1", 1))
	for !strings.Contains(m.Logs(), "must not be negative") {
		if time.Now().After(deadline.Add(10 * time.Second)) {
			t.Fatalf("no rejection logged for a malformed VirtualService; logs:\n%s", m.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for i := 0; i < 50; i++ {
		if got := name(); got != "backend-v2" {
			t.Fatalf("after a malformed edit, call %d went to %s: the last good routes were lost", i, got)
		}
	}
	if t.Failed() {
		t.Logf("mesh logs:\n%s", m.Logs())
	}
}
