package controlplane

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

const denyAdminYAML = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: api}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: [/admin]}}]}]
`

// TestWebViewOnTheAdminPort runs a control plane and checks its web view:
// the page and the model on the admin port beside the admin routes, and a
// check form that follows the MeshConfig in force as it is edited.
func TestWebViewOnTheAdminPort(t *testing.T) {
	dir, meshFile := t.TempDir(), filepath.Join(t.TempDir(), "mesh.yaml")
	writeFile := func(path, s string) {
		t.Helper()
		if err := os.WriteFile(path+".tmp", []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(filepath.Join(dir, "deny.yaml"), denyAdminYAML)
	writeFile(meshFile, "pathNormalization: {normalization: BASE}\n")
	cfg := Config{ConfigDir: dir, DataDir: t.TempDir(), Listen: "127.0.0.1:0", Admin: "127.0.0.1:0", MeshConfig: meshFile,
		Logger: slog.New(slog.DiscardHandler)}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	p, err := build(cfg, spiffeid.RequireTrustDomainFromString(cfg.TrustDomain))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	p.start(ctx, &wg, make(chan error, 4))
	t.Cleanup(func() { cancel(); p.stopServers(); wg.Wait() })
	base := "http://" + p.adminLis.Addr().String()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := client.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	if code, body := get("/"); code != 200 || !strings.Contains(body, `<table id="policies">`) || !strings.Contains(body, "api/deny-admin") {
		t.Errorf("GET / = %d %.200s", code, body)
	}
	if code, body := get("/ready"); code != 200 || body != "ready\n" {
		t.Errorf("the admin routes are still served: GET /ready = %d %q", code, body)
	}
	var m struct {
		TrustDomain string `json:"trustDomain"`
		Policies    []struct {
			Name string `json:"name"`
		} `json:"policies"`
		CA []struct {
			Role      string  `json:"role"`
			ExpiresIn float64 `json:"expiresInSeconds"`
		} `json:"ca"`
	}
	if code, body := get("/ui/mesh.json"); code != 200 || json.Unmarshal([]byte(body), &m) != nil || m.TrustDomain != "cluster.local" ||
		len(m.Policies) != 1 || m.Policies[0].Name != "deny-admin" || len(m.CA) != 2 || m.CA[0].Role != "root" || m.CA[0].ExpiresIn < 86400 {
		t.Errorf("GET /ui/mesh.json = %d %s", code, body)
	}

	decide := func() string {
		t.Helper()
		resp, err := client.Post(base+"/ui/check", "application/json", strings.NewReader(
			`{"workload":{"namespace":"api"},"source":{"principal":"cluster.local/ns/web/sa/frontend"},"request":{"port":8080,"method":"GET","path":"//admin"}}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct{ Decision, Policy string }
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatal(err)
		}
		return out.Decision + " " + out.Policy
	}
	// Under BASE, //admin is not /admin (Istio's documented bypass).
	if got := decide(); got != "ALLOW " {
		t.Fatalf("//admin under BASE = %q, want ALLOW", got)
	}
	writeFile(meshFile, "pathNormalization: {normalization: MERGE_SLASHES}\n")
	deadline := time.Now().Add(10 * time.Second)
	for decide() != "DENY api/deny-admin" {
		if time.Now().After(deadline) {
			t.Fatal("the check form still decides under the old MeshConfig 10s after the edit")
		}
		time.Sleep(100 * time.Millisecond) // awaiting the watcher's next read (every second)
	}
}
