package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"

	"github.com/zmesh/zmesh/internal/kubecrd"
	"github.com/zmesh/zmesh/internal/kubetest"
)

// checkKubeExtra is added to the quickstart for TestCheckKubeconfigSameAsDir:
// a DENY, a v1beta1 object and a JWT rule, so more than one stage decides.
const checkKubeExtra = `apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: api}
spec:
  action: DENY
  rules:
  - to:
    - operation: {paths: ["/admin/*"]}
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: api}
spec:
  selector: {matchLabels: {app: backend}}
  jwtRules:
  - issuer: issuer.example.com
    jwks: '{"keys":[]}'
`

// TestCheckKubeconfigSameAsDir applies a directory's resources to a real
// apiserver and checks that `zmesh check --kubeconfig` prints, for each
// request, exactly what `zmesh check --config DIR` prints; then that an
// object the cluster holds but zmesh rejects is named on stderr and left
// out, as the control plane leaves it out.
func TestCheckKubeconfigSameAsDir(t *testing.T) {
	c := kubetest.Shared(t)
	defer kubetest.StopShared()
	dir := t.TempDir()
	for _, name := range []string{"backend-authz.yaml", "peer-authentication.yaml", "workloads.yaml"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "examples", "quickstart", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "extra.yaml"), []byte(checkKubeExtra), 0o600); err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(c.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := kubecrd.Apply(ctx, dyn); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		applyIstioYAML(t, c, dyn, b)
	}

	requests := []string{
		`{"workload":{"namespace":"api","labels":{"app":"backend"}},"source":{"principal":"cluster.local/ns/web/sa/frontend"},"request":{"port":8080,"method":"GET","host":"backend.api","path":"/"}}`,
		`{"workload":{"namespace":"api","labels":{"app":"backend"}},"source":{"principal":"cluster.local/ns/web/sa/stranger"},"request":{"port":8080,"method":"GET","host":"backend.api","path":"/"}}`,
		`{"workload":{"namespace":"api","labels":{"app":"backend"}},"source":{"principal":"cluster.local/ns/web/sa/frontend"},"request":{"port":8080,"method":"GET","host":"backend.api","path":"/admin/x"}}`,
		`{"workload":{"namespace":"api","labels":{"app":"backend"}},"source":{},"request":{"port":8080,"method":"GET","host":"backend.api","path":"/"}}`,
		`{"workload":{"namespace":"api","labels":{"app":"backend"}},"source":{"principal":"cluster.local/ns/web/sa/frontend"},"request":{"port":8080,"method":"GET","host":"backend.api","path":"/","jwt":"not.a.jwt"}}`,
	}
	compare := func(wantStderr string) {
		t.Helper()
		for i, req := range requests {
			fromDir, _, err := runCheck(t, []byte(req), "--config", dir, "--request", "-")
			if err != nil {
				t.Fatalf("request %d: --config: %v", i, err)
			}
			fromCluster, stderr, err := runCheck(t, []byte(req), "--kubeconfig", c.Kubeconfig, "--request", "-")
			if err != nil {
				t.Fatalf("request %d: --kubeconfig: %v (%s)", i, err, stderr)
			}
			if fromCluster != fromDir {
				t.Errorf("request %d:\n--kubeconfig %s--config     %s", i, fromCluster, fromDir)
			}
			if !strings.Contains(stderr, wantStderr) {
				t.Errorf("request %d: stderr %q, want %q", i, stderr, wantStderr)
			}
		}
	}
	compare("")

	// An object zmesh rejects: named on stderr, left out; the answers of
	// the directory (which lacks it) stay the same.
	applyIstioYAML(t, c, dyn, []byte(`apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: bad, namespace: api}
spec:
  action: DENY
  rules:
  - from:
    - source: {principals: ["cluster.local/ns/*/sa/frontend"]}
`))
	compare("zmesh: rejected, not in force: AuthorizationPolicy api/bad")

	if _, _, err := runCheck(t, []byte(requests[0]), "--kubeconfig", c.Kubeconfig, "--config", dir, "--request", "-"); exitCode(err) != 2 {
		t.Errorf("--kubeconfig with --config: %v, want exit 2", err)
	}
}

func exitCode(err error) int {
	var e *exitError
	if errors.As(err, &e) {
		return e.code
	}
	return -1
}

// applyIstioYAML creates the Istio objects of a YAML stream (and their
// namespaces), skipping zmesh's own documents.
func applyIstioYAML(t *testing.T, c *kubetest.Cluster, dyn dynamic.Interface, data []byte) {
	t.Helper()
	plural := map[string]string{"AuthorizationPolicy": "authorizationpolicies", "PeerAuthentication": "peerauthentications", "RequestAuthentication": "requestauthentications"}
	ctx := context.Background()
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return
			}
			t.Fatal(err)
		}
		u := &unstructured.Unstructured{Object: m}
		if len(m) == 0 || strings.HasPrefix(u.GetAPIVersion(), "zmesh.dev/") {
			continue
		}
		gv, err := schema.ParseGroupVersion(u.GetAPIVersion())
		if err != nil || plural[u.GetKind()] == "" {
			t.Fatalf("cannot apply %s %s", u.GetAPIVersion(), u.GetKind())
		}
		if _, err := c.Client(t).CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: u.GetNamespace()}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
		if _, err := dyn.Resource(gv.WithResource(plural[u.GetKind()])).Namespace(u.GetNamespace()).Create(ctx, u, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create %s %s/%s: %v", u.GetKind(), u.GetNamespace(), u.GetName(), err)
		}
	}
}
