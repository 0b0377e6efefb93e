package kubecrd_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/zmesh/zmesh/internal/kubecrd"
	"github.com/zmesh/zmesh/internal/kubecrd/internal/source"
	"github.com/zmesh/zmesh/internal/kubetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	kubetest.StopShared()
	os.Exit(code)
}

// TestEmbeddedMatchesModule checks that the embedded CRDs are the
// istio.io/api module's file at the version go.mod requires, byte for
// byte below the header: the copy is the dependency's data, never edited.
// After a version bump it fails until `go generate ./internal/kubecrd`.
func TestEmbeddedMatchesModule(t *testing.T) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Version}} {{.Dir}}", source.Module).Output()
	if err != nil {
		t.Skipf("go list -m %s: %v", source.Module, err)
	}
	version, dir, _ := strings.Cut(strings.TrimSpace(string(out)), " ")
	want, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(source.Path)))
	if err != nil {
		t.Fatalf("the module's file: %v (go mod download %s)", err, source.Module)
	}
	got := kubecrd.YAML()
	header := source.Header(version)
	if !bytes.HasPrefix(got, []byte(header)) {
		t.Fatalf("embedded file does not start with the header for %s %s; run go generate ./internal/kubecrd", source.Module, version)
	}
	if !bytes.Equal(got[len(header):], want) {
		t.Fatalf("embedded CRDs differ from %s@%s %s; run go generate ./internal/kubecrd", source.Module, version, source.Path)
	}
}

// TestObjectsHoldTheKindsZmeshReads checks that decoding gives the CRDs
// of every kind zmesh reads, with the versions its sources use served.
func TestObjectsHoldTheKindsZmeshReads(t *testing.T) {
	objs, err := kubecrd.Objects()
	if err != nil {
		t.Fatal(err)
	}
	served := map[string]bool{} // NAME/VERSION
	for _, o := range objs {
		versions, _, _ := unstructured.NestedSlice(o.Object, "spec", "versions")
		for _, v := range versions {
			m := v.(map[string]any)
			if m["served"] == true {
				served[o.GetName()+"/"+m["name"].(string)] = true
			}
		}
	}
	for _, want := range []string{
		"authorizationpolicies.security.istio.io/v1", "authorizationpolicies.security.istio.io/v1beta1",
		"peerauthentications.security.istio.io/v1", "peerauthentications.security.istio.io/v1beta1",
		"requestauthentications.security.istio.io/v1", "requestauthentications.security.istio.io/v1beta1",
		"serviceentries.networking.istio.io/v1", "serviceentries.networking.istio.io/v1beta1",
		"workloadentries.networking.istio.io/v1", "workloadentries.networking.istio.io/v1beta1",
	} {
		if !served[want] {
			t.Errorf("%s is not served by the embedded CRDs", want)
		}
	}
}

// TestApplyEstablishesCRDs applies the CRDs to a real apiserver twice (the
// second time is an update), and checks that each is Established and that
// an Istio resource can then be created through it.
func TestApplyEstablishesCRDs(t *testing.T) {
	c := kubetest.Shared(t)
	dyn, err := dynamic.NewForConfig(c.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for range 2 {
		if err := kubecrd.Apply(ctx, dyn); err != nil {
			t.Fatal(err)
		}
	}
	names, err := kubecrd.Names()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		crd, err := dyn.Resource(kubecrd.GVR).Get(ctx, n, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("CRD %s: %v", n, err)
		}
		conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
		ok := false
		for _, c := range conds {
			m := c.(map[string]any)
			ok = ok || (m["type"] == "Established" && m["status"] == "True")
		}
		if !ok {
			t.Errorf("CRD %s not Established: %v", n, conds)
		}
	}
	ap := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "security.istio.io/v1beta1",
		"kind":       "AuthorizationPolicy",
		"metadata":   map[string]any{"name": "allow-nothing", "namespace": "default"},
		"spec":       map[string]any{},
	}}
	gvr := schema.GroupVersionResource{Group: "security.istio.io", Version: "v1beta1", Resource: "authorizationpolicies"}
	if _, err := dyn.Resource(gvr).Namespace("default").Create(ctx, ap, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create an AuthorizationPolicy through the applied CRD: %v", err)
	}
}

// TestWaitEstablishedHonoursContext checks that waiting for a CRD that
// never comes ends with the context, naming it.
func TestWaitEstablishedHonoursContext(t *testing.T) {
	c := kubetest.Shared(t)
	dyn, err := dynamic.NewForConfig(c.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err = kubecrd.WaitEstablished(ctx, dyn, "nothings.example.com")
	if err == nil || !strings.Contains(err.Error(), "nothings.example.com") {
		t.Fatalf("WaitEstablished = %v, want a deadline error naming the CRD", err)
	}
}
