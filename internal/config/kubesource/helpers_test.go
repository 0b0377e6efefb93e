package kubesource_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/config/kubesource"
	"github.com/zmesh/zmesh/internal/kubecrd"
	"github.com/zmesh/zmesh/internal/kubetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	kubetest.StopShared()
	os.Exit(code)
}

// env is the shared test cluster, with Istio's CRDs applied, and clients.
type env struct {
	c    *kubetest.Cluster
	kube kubernetes.Interface
	dyn  dynamic.Interface
}

var (
	crdOnce sync.Once
	crdErr  error
)

func newEnv(t *testing.T) *env {
	t.Helper()
	c := kubetest.Shared(t)
	dyn, err := dynamic.NewForConfig(c.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	crdOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		crdErr = kubecrd.Apply(ctx, dyn)
	})
	if crdErr != nil {
		t.Fatalf("apply CRDs: %v", crdErr)
	}
	return &env{c: c, kube: c.Client(t), dyn: dyn}
}

// namespace creates ns unless it exists.
func (e *env) namespace(t *testing.T, ns string) {
	t.Helper()
	_, err := e.kube.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// plurals maps the Istio kinds the tests write to their resources.
var plurals = map[string]string{
	"AuthorizationPolicy":   "authorizationpolicies",
	"PeerAuthentication":    "peerauthentications",
	"RequestAuthentication": "requestauthentications",
	"ServiceEntry":          "serviceentries",
	"WorkloadEntry":         "workloadentries",
	"DestinationRule":       "destinationrules",
	"VirtualService":        "virtualservices",
	"Sidecar":               "sidecars",
	"Gateway":               "gateways",
}

func gvrOf(t *testing.T, u *unstructured.Unstructured) schema.GroupVersionResource {
	t.Helper()
	gv, err := schema.ParseGroupVersion(u.GetAPIVersion())
	if err != nil || plurals[u.GetKind()] == "" {
		t.Fatalf("no resource for %s %s", u.GetAPIVersion(), u.GetKind())
	}
	return gv.WithResource(plurals[u.GetKind()])
}

// decode returns the Istio objects of a YAML stream, skipping zmesh's own
// (zmesh.dev) documents, as the control plane does.
func decode(t *testing.T, data []byte) []*unstructured.Unstructured {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return out
			}
			t.Fatal(err)
		}
		u := &unstructured.Unstructured{Object: m}
		if len(m) == 0 || strings.HasPrefix(u.GetAPIVersion(), "zmesh.dev/") {
			continue
		}
		out = append(out, u)
	}
}

// apply creates each object (its namespace first), or replaces its spec,
// labels and annotations if it exists, and removes it when the test ends.
func (e *env) apply(t *testing.T, objs ...*unstructured.Unstructured) {
	t.Helper()
	ctx := context.Background()
	for _, u := range objs {
		ns := u.GetNamespace()
		if ns == "" {
			ns = "default"
		}
		e.namespace(t, ns)
		rc := e.dyn.Resource(gvrOf(t, u)).Namespace(ns)
		cur, err := rc.Get(ctx, u.GetName(), metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			if _, err := rc.Create(ctx, u.DeepCopy(), metav1.CreateOptions{}); err != nil {
				t.Fatalf("create %s %s/%s: %v", u.GetKind(), ns, u.GetName(), err)
			}
			name := u.GetName()
			t.Cleanup(func() { _ = rc.Delete(context.Background(), name, metav1.DeleteOptions{}) })
		case err != nil:
			t.Fatal(err)
		default:
			cur.Object["spec"] = u.Object["spec"]
			cur.SetLabels(u.GetLabels())
			cur.SetAnnotations(u.GetAnnotations())
			if _, err := rc.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
				t.Fatalf("update %s %s/%s: %v", u.GetKind(), ns, u.GetName(), err)
			}
		}
	}
}

func (e *env) applyYAML(t *testing.T, y string) {
	t.Helper()
	e.apply(t, decode(t, []byte(y))...)
}

// run starts a Source on the cluster for the test's duration.
func (e *env) run(t *testing.T, cfg kubesource.Config) *kubesource.Source {
	t.Helper()
	cfg.REST = e.c.RESTConfig()
	if cfg.Debounce == 0 {
		cfg.Debounce = 20 * time.Millisecond
	}
	s, err := kubesource.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return s
}

// waitFor reads snapshots from ch until ok accepts one, failing after
// limit.
func waitFor(t *testing.T, ch <-chan *config.Snapshot, limit time.Duration, what string, ok func(*config.Snapshot) bool) *config.Snapshot {
	t.Helper()
	timer := time.NewTimer(limit)
	defer timer.Stop()
	var last *config.Snapshot
	for {
		select {
		case snap := <-ch:
			last = snap
			if ok(snap) {
				return snap
			}
		case <-timer.C:
			t.Fatalf("no snapshot with %s after %s; last: %v", what, limit, describe(last))
			return nil
		}
	}
}

func describe(s *config.Snapshot) []string {
	var out []string
	for _, r := range s.All() {
		out = append(out, string(r.Kind)+" "+r.Key())
	}
	return out
}

// find returns the resource kind ns/name of snap.
func find(snap *config.Snapshot, kind config.Kind, key string) (config.Resource, bool) {
	for _, r := range snap.List(kind) {
		if r.Key() == key {
			return r, true
		}
	}
	return config.Resource{}, false
}

// eventually polls cond (a state of the apiserver, which has no push for
// it here) until it holds, failing after limit.
func eventually(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
