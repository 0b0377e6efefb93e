package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDescribeWorkload: the effective mode per port (a port-level
// exception and the rest, each with the policy that set it), each policy
// selecting the workload with why, policies that do not select it left
// out, and the live certificate read from the proxy's admin port.
func TestDescribeWorkload(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir()) // no running zmesh up
	dir := t.TempDir()
	resources := `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: db-metrics, namespace: data}
spec:
  selector: {matchLabels: {app: db}}
  portLevelMtls: {9090: {mode: PERMISSIVE}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-debug, namespace: istio-system}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: ["/debug*"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-api, namespace: data}
spec:
  selector: {matchLabels: {app: db}}
  rules: [{from: [{source: {namespaces: [api]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: other, namespace: data}
spec:
  selector: {matchLabels: {app: cache}}
  rules: [{}]
---
apiVersion: zmesh.dev/v1alpha1
kind: Workload
metadata: {name: db, namespace: data}
spec:
  labels: {app: db}
  command: [zmesh, echo]
`
	if err := os.WriteFile(filepath.Join(dir, "r.yaml"), []byte(resources), 0o600); err != nil {
		t.Fatal(err)
	}
	chain, err := os.ReadFile("../../internal/certinfo/testdata/chain.pem")
	if err != nil {
		t.Fatal(err)
	}
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{"chainPEM": string(chain)})
	}))
	defer proxy.Close()

	cmd := describeCmd()
	var out bytes.Buffer
	cmd.SetArgs([]string{"workload", "data/db", "--config", dir, "--admin", strings.TrimPrefix(proxy.URL, "http://")})
	cmd.SetOut(&out)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{
		"port 9090: PERMISSIVE (data/db-metrics)",
		"other ports: STRICT (istio-system/default)",
		"DENY istio-system/deny-debug: mesh-wide (root namespace)",
		"ALLOW data/allow-api: namespace-wide, selector app=db",
		"spiffe://cluster.local/ns/foo/sa/httpbin, ECDSA P-256",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "data/other") {
		t.Errorf("a policy that does not select the workload is listed:\n%s", got)
	}
}
