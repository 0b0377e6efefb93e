package controlplane

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/zmesh/zmesh/internal/kubecrd"
	"github.com/zmesh/zmesh/internal/kubetest"
	"github.com/zmesh/zmesh/internal/registry"
	"github.com/zmesh/zmesh/internal/xds"
)

func TestMain(m *testing.M) {
	code := m.Run()
	kubetest.StopShared()
	os.Exit(code)
}

var (
	crdOnce sync.Once
	crdErr  error
)

// kubeCluster returns the shared test cluster with Istio's CRDs applied.
func kubeCluster(t *testing.T) (*kubetest.Cluster, kubernetes.Interface) {
	t.Helper()
	c := kubetest.Shared(t)
	crdOnce.Do(func() { crdErr = prepareCluster(c) })
	if crdErr != nil {
		t.Fatal(crdErr)
	}
	return c, c.Client(t)
}

// prepareCluster makes c ready for a control plane in Kubernetes mode:
// Istio's CRDs established, and the root namespace, where the CA keeps
// its root in Secrets as istiod does.
func prepareCluster(c *kubetest.Cluster) error {
	dyn, err := dynamic.NewForConfig(c.RESTConfig())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := kubecrd.Apply(ctx, dyn); err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(c.RESTConfig())
	if err != nil {
		return err
	}
	_, err = cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "istio-system"}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}

// putMeshConfigMap creates or updates ConfigMap ns/istio with mesh as its
// `mesh` key.
func putMeshConfigMap(t *testing.T, cs kubernetes.Interface, ns, mesh string) {
	t.Helper()
	ctx := context.Background()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "istio", Namespace: ns}, Data: map[string]string{"mesh": mesh}}
	if _, err := cs.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{}); apierrors.IsNotFound(err) {
		_, err = cs.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
	} else if err != nil {
		t.Fatal(err)
	}
}

// meshRecorder stands for the xDS server's SetMesh.
type meshRecorder struct {
	mu     sync.Mutex
	meshes []xds.Mesh
	ch     chan xds.Mesh
}

func (r *meshRecorder) set(m xds.Mesh) error {
	r.mu.Lock()
	r.meshes = append(r.meshes, m)
	r.mu.Unlock()
	r.ch <- m
	return nil
}

func (r *meshRecorder) next(t *testing.T, limit time.Duration) xds.Mesh {
	t.Helper()
	select {
	case m := <-r.ch:
		return m
	case <-time.After(limit):
		t.Fatalf("no mesh settings applied within %s", limit)
		return xds.Mesh{}
	}
}

func waitTrue(t *testing.T, b *atomic.Bool, want bool, limit time.Duration, what string) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for b.Load() != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestKubeMeshConfigMap runs the cluster source as the control plane wires
// it: the mesh ConfigMap's settings reach the xDS server's mesh, a bad edit
// is refused (last good kept, flagged for zmesh_config_source_valid), a
// good edit applies again; and with a bad ConfigMap at start, no snapshot
// is published until it is fixed.
func TestKubeMeshConfigMap(t *testing.T) {
	c, cs := kubeCluster(t)
	const root = "mesh-root-a"
	putMeshConfigMap(t, cs, root, "outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n")
	cfg := Config{Kubeconfig: c.Kubeconfig, DataDir: t.TempDir(), RootNamespace: root}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg.Logger = slog.New(slog.DiscardHandler)
	rec := &meshRecorder{ch: make(chan xds.Mesh, 10)}
	rejected := new(atomic.Bool)
	src, err := newKubeSource(&cfg, registry.NewStore(""), rec.set, prometheus.NewRegistry(), rejected)
	if err != nil {
		t.Fatal(err)
	}
	runSource(t, kubeSource{src})

	if m := rec.next(t, 10*time.Second); m.OutboundTrafficPolicy != "REGISTRY_ONLY" || m.TrustDomain != "cluster.local" {
		t.Fatalf("first mesh = %+v, want REGISTRY_ONLY from the ConfigMap", m)
	}
	// The source publishes its first snapshot once a mesh config is in
	// force, after the mesh settings were handed over.
	waitUntil(t, 5*time.Second, "a snapshot after the mesh config was accepted", func() bool { return src.Current() != nil })

	// A trust domain other than the CA's is refused.
	putMeshConfigMap(t, cs, root, "trustDomain: other.example\noutboundTrafficPolicy: {mode: ALLOW_ANY}\n")
	waitTrue(t, rejected, true, 5*time.Second, "bad mesh edit flagged")
	putMeshConfigMap(t, cs, root, "outboundTrafficPolicy: {mode: ALLOW_ANY}\n")
	if m := rec.next(t, 5*time.Second); m.OutboundTrafficPolicy != "ALLOW_ANY" {
		t.Fatalf("mesh after the fix = %+v", m)
	}
	waitTrue(t, rejected, false, 5*time.Second, "fixed mesh edit unflagged")
	rec.mu.Lock()
	for _, m := range rec.meshes {
		if m.TrustDomain != "cluster.local" {
			t.Errorf("a refused mesh config reached the xDS server: %+v", m)
		}
	}
	rec.mu.Unlock()

	// A bad ConfigMap at start: no snapshot until it is fixed.
	const root2 = "mesh-root-b"
	putMeshConfigMap(t, cs, root2, "notAField: 1\n")
	cfg2 := cfg
	cfg2.RootNamespace = root2
	rec2 := &meshRecorder{ch: make(chan xds.Mesh, 10)}
	rejected2 := new(atomic.Bool)
	src2, err := newKubeSource(&cfg2, registry.NewStore(""), rec2.set, prometheus.NewRegistry(), rejected2)
	if err != nil {
		t.Fatal(err)
	}
	runSource(t, kubeSource{src2})
	waitTrue(t, rejected2, true, 10*time.Second, "bad mesh config at start flagged")
	if src2.Current() != nil {
		t.Fatal("a snapshot was published before any mesh config was accepted")
	}
	putMeshConfigMap(t, cs, root2, "h2UpgradePolicy: UPGRADE\n")
	if m := rec2.next(t, 5*time.Second); m.H2UpgradePolicy != "UPGRADE" {
		t.Fatalf("mesh after the fix = %+v", m)
	}
	updates, cancel := src2.Subscribe()
	defer cancel()
	select {
	case <-updates:
	case <-time.After(5 * time.Second):
		t.Fatal("no snapshot after the mesh config was fixed")
	}
}

func runSource(t *testing.T, src configSource) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// TestControlPlaneFromCluster runs the control plane's parts with
// --kubeconfig: it becomes ready once the cluster's config is loaded and
// reports zmesh_config_source_valid{source="kubernetes"}.
func TestControlPlaneFromCluster(t *testing.T) {
	c, _ := kubeCluster(t)
	cfg := Config{Kubeconfig: c.Kubeconfig, DataDir: t.TempDir(), Listen: "127.0.0.1:0", Admin: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	p, err := build(cfg, spiffeid.RequireTrustDomainFromString("cluster.local"))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errc := make(chan error, 4)
	p.start(ctx, &wg, errc)
	defer func() {
		cancel()
		p.stopServers()
		wg.Wait()
	}()
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + p.adminLis.Addr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if code, _ := get("/ready"); code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("control plane not ready within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, metrics := get("/metrics")
	for _, want := range []string{`zmesh_config_source_valid{source="kubernetes"} 1`, `zmesh_config_source_valid{source="mesh-config"} 1`, `zmesh_config_rejected_objects{kind="AuthorizationPolicy"} 0`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestKubeConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		err  string
	}{
		{"kubeconfig alone", Config{Kubeconfig: "k", DataDir: "d"}, ""},
		{"in cluster", Config{InCluster: true, DataDir: "d"}, ""},
		{"config dir alone", Config{ConfigDir: "c", DataDir: "d"}, ""},
		{"neither", Config{DataDir: "d"}, "--config-dir (or --kubeconfig) is required"},
		{"both", Config{ConfigDir: "c", Kubeconfig: "k", DataDir: "d"}, "exclusive"},
		{"mesh file with a cluster", Config{Kubeconfig: "k", MeshConfig: "m", DataDir: "d"}, "--mesh-config is not used with --kubeconfig"},
		{"no data dir", Config{Kubeconfig: "k"}, "--data-dir is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("Validate = %v, want %q", err, tc.err)
			}
		})
	}
}
