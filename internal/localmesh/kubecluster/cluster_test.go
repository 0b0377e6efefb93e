package kubecluster

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/zmesh/zmesh/internal/kubetest"
	"github.com/zmesh/zmesh/internal/localmesh"
)

// TestPrepareAndToken runs Prepare twice on a bare cluster (no CRDs, no
// istio-system): the first run installs Istio's CRDs and creates
// everything, the second finds it all there and updates the policy; a
// directory holding an object the apiserver refuses stops Prepare with
// its file and name. Token issues a token for istio-ca.
func TestPrepareAndToken(t *testing.T) {
	c := kubetest.New(t)
	cs := c.Client(t)
	cl, err := New(Config{Kubeconfig: c.Kubeconfig})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	policy := func(principal string) string {
		return `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow, namespace: api}
spec:
  rules: [{from: [{source: {principals: ["` + principal + `"]}}]}]
`
	}
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("authz.yaml", policy("cluster.local/ns/web/sa/a"))
	workloads := []localmesh.Workload{{Name: "a", Namespace: "web", ServiceAccount: "a"}}
	mesh := []byte("trustDomainAliases: [old.local]\n")
	if err := cl.Prepare(ctx, dir, workloads, mesh); err != nil {
		t.Fatal(err)
	}
	write("authz.yaml", policy("cluster.local/ns/web/sa/b"))
	if err := cl.Prepare(ctx, dir, workloads, nil); err != nil {
		t.Fatalf("second run: %v", err)
	}
	gvr := schema.GroupVersionResource{Group: "security.istio.io", Version: "v1", Resource: "authorizationpolicies"}
	ap, err := cl.dyn.Resource(gvr).Namespace("api").Get(ctx, "allow", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := ap.Object["spec"]; !strings.Contains(toString(got), "sa/b") {
		t.Errorf("policy spec %v, want the second run's principal", got)
	}
	if _, err := cs.CoreV1().ServiceAccounts("web").Get(ctx, "a", metav1.GetOptions{}); err != nil {
		t.Errorf("service account web/a: %v", err)
	}
	cm, err := cs.CoreV1().ConfigMaps("istio-system").Get(ctx, "istio", metav1.GetOptions{})
	if err != nil || cm.Data["mesh"] != string(mesh) {
		t.Errorf("mesh ConfigMap %v, %v", cm, err)
	}

	// The CRD schema refuses an action outside its enum.
	write("bad.yaml", "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: bad, namespace: api}\nspec: {action: MAYBE}\n")
	err = cl.Prepare(ctx, dir, workloads, nil)
	if err == nil || !strings.Contains(err.Error(), "bad.yaml document 0: apply AuthorizationPolicy api/bad") {
		t.Errorf("Prepare with a refused object: %v", err)
	}

	tok, exp, err := cl.Token(ctx, "web", "a")
	if err != nil {
		t.Fatal(err)
	}
	if tok == "" || time.Until(exp) < 50*time.Minute || time.Until(exp) > 61*time.Minute {
		t.Errorf("token expires %s, want in about an hour", exp)
	}
	if _, _, err := cl.Token(ctx, "web", "nobody"); err == nil {
		t.Error("a token for a missing service account")
	}
}

func toString(v any) string {
	var b strings.Builder
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for _, e := range x {
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		case string:
			b.WriteString(x + " ")
		}
	}
	walk(v)
	return b.String()
}
