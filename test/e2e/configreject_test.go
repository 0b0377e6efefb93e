package e2e

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestOneResourceDoesNotFreezeTheMesh is the attack from the hardening
// issue: whoever can write one resource in namespace web adds a
// ServiceEntry that expects its own identity at the backend's proxy
// address. Proxies would refuse any view holding it (one address, two
// identities), so the control plane leaves it out alone and says so, and
// a revocation made afterwards in another namespace still takes effect.
func TestOneResourceDoesNotFreezeTheMesh(t *testing.T) {
	m := startMesh(t)
	frontend, backend := m.w("web/frontend"), m.w("api/backend")
	if r := call(t, frontend.app, "backend.api/"); r.Status != 200 {
		t.Fatalf("before: frontend got %d, want 200", r.Status)
	}
	host, port, err := net.SplitHostPort(backend.inbound)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(m.dir, "web-hijack.yaml"), `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: hijack, namespace: web}
spec:
  hosts: [hijack.example.com]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints:
  - address: `+host+`
    ports: {http: `+port+`}
    serviceAccount: stranger
    labels: {security.istio.io/tlsMode: istio}
`)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(m.Logs(), "config resource rejected") {
		if time.Now().After(deadline) {
			t.Fatalf("no rejection logged for the ServiceEntry; logs:\n%s", m.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The revocation: nobody may call the backend any more.
	policy := filepath.Join(m.dir, "backend-authz.yaml")
	writeFile(t, policy, `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: backend-allow-frontend, namespace: api}
spec:
  selector: {matchLabels: {app: backend}}
  action: ALLOW
  rules: [{from: [{source: {principals: ["cluster.local/ns/web/sa/nobody"]}}]}]
`)
	waitStatus(t, frontend.app, "backend.api/", 403, 5*time.Second)

	metrics := get(t, "http://"+m.cpAdmin+"/metrics")
	for _, want := range []string{
		`zmesh_config_rejected_resources{kind="ServiceEntry",name="hijack",namespace="web",reason="conflict"} 1`,
		`zmesh_config_source_valid{source="config-dir"} 0`,
		`zmesh_xds_proxies_nacking 0`,
		`zmesh_xds_rejected_pushes_total 0`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("control plane metrics lack %q", want)
		}
	}
	var debug struct {
		Valid    bool `json:"valid"`
		Rejected []struct {
			Kind, Namespace, Name, Reason, Error string
		} `json:"rejected"`
	}
	if err := json.Unmarshal([]byte(get(t, "http://"+m.cpAdmin+"/debug/config")), &debug); err != nil {
		t.Fatal(err)
	}
	if debug.Valid || len(debug.Rejected) != 1 || debug.Rejected[0].Name != "hijack" || !strings.Contains(debug.Rejected[0].Error, "api/backend") {
		t.Errorf("/debug/config = %+v, want web/hijack rejected, naming api/backend", debug)
	}
	if t.Failed() {
		t.Logf("mesh logs:\n%s", m.Logs())
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
