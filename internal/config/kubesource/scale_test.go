package kubesource_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/utils/ptr"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/config/kubesource"
	"github.com/zmesh/zmesh/internal/kubecrd"
	"github.com/zmesh/zmesh/internal/kubetest"
	"github.com/zmesh/zmesh/internal/registry"
)

var scaleProfile = flag.String("scaleprofile", "", "TestScale: write a heap profile here once the source has synced")

var scale = flag.Int("scale", 0, "TestScale: namespaces to create (each with 10 AuthorizationPolicies, one Service and 10 Pods); 0 skips")

// TestScale measures the source at scale on a cluster of its own: N
// namespaces × 10 AuthorizationPolicies, N Services with one EndpointSlice
// of 10 Pods each (10·N pods). It reports the time to the first snapshot,
// the Go heap the source holds (after GC, in use before and after), the
// process RSS, and the time from an API edit to a snapshot over 20 edits.
// It is a measurement, not a pass/fail test:
//
//	go test ./internal/config/kubesource -run TestScale -v -timeout 40m -args -scale=1000
func TestScale(t *testing.T) {
	if *scale == 0 {
		t.Skip("run with -scale N (N namespaces)")
	}
	n := *scale
	c := kubetest.New(t)
	rc := c.RESTConfig()
	rc.QPS, rc.Burst = 2000, 4000
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := kubecrd.Apply(ctx, dyn); err != nil {
		t.Fatal(err)
	}
	cs := c.Client(t)
	apGVR := schema.GroupVersionResource{Group: "security.istio.io", Version: "v1", Resource: "authorizationpolicies"}

	start := time.Now()
	work := make(chan int)
	var wg sync.WaitGroup
	var failMu sync.Mutex
	var firstErr error
	fail := func(err error) {
		failMu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		failMu.Unlock()
	}
	for range 16 {
		wg.Go(func() {
			for i := range work {
				ns := fmt.Sprintf("scale-%04d", i)
				if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
					fail(err)
					continue
				}
				if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
					fail(err)
				}
				for j := range 10 {
					ap := decode(t, []byte(fmt.Sprintf(`apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p%d, namespace: %s}
spec:
  selector: {matchLabels: {app: app%d}}
  rules:
  - from:
    - source: {principals: ["cluster.local/ns/%s/sa/caller%d"]}
    to:
    - operation: {methods: ["GET"], paths: ["/api/%d/*"]}
`, j, ns, j, ns, j, j)))[0]
					if _, err := dyn.Resource(apGVR).Namespace(ns).Create(ctx, ap, metav1.CreateOptions{}); err != nil {
						fail(err)
					}
				}
				var eps []discoveryv1.Endpoint
				for j := range 10 {
					name := fmt.Sprintf("app-%d", j)
					pod := &corev1.Pod{
						ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": "app", "security.istio.io/tlsMode": "istio"}},
						Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}},
					}
					if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
						fail(err)
					}
					eps = append(eps, discoveryv1.Endpoint{Addresses: []string{fmt.Sprintf("10.%d.%d.%d", 1+i/250, i%250, 10+j)}, TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: name, Namespace: ns}})
				}
				if _, err := cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{
					ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: ns},
					Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
				}, metav1.CreateOptions{}); err != nil {
					fail(err)
				}
				if _, err := cs.DiscoveryV1().EndpointSlices(ns).Create(ctx, &discoveryv1.EndpointSlice{
					ObjectMeta:  metav1.ObjectMeta{Name: "app-1", Namespace: ns, Labels: map[string]string{discoveryv1.LabelServiceName: "app"}},
					AddressType: discoveryv1.AddressTypeIPv4,
					Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](80)}},
					Endpoints:   eps,
				}, metav1.CreateOptions{}); err != nil {
					fail(err)
				}
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		t.Fatal(firstErr)
	}
	t.Logf("created %d namespaces, %d policies, %d pods, %d services in %s", n, 10*n, 10*n, n, time.Since(start).Round(time.Second))

	heapBefore, rssBefore := memory()
	var svcCount sync.Map
	s, err := kubesource.New(kubesource.Config{REST: rc, Services: func(svcs []registry.Service) { svcCount.Store("n", len(svcs)) }})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	start = time.Now()
	go func() { done <- s.Run(runCtx) }()
	defer func() {
		cancel()
		<-done
	}()
	ch, unsub := s.Subscribe()
	defer unsub()
	waitFor(t, ch, 10*time.Minute, "every policy", func(s *config.Snapshot) bool { return len(s.List(config.KindAuthorizationPolicy)) == 10*n })
	synced := time.Since(start)
	heapAfter, rssAfter := memory()
	if *scaleProfile != "" {
		f, err := os.Create(*scaleProfile)
		if err != nil {
			t.Fatal(err)
		}
		if err := pprof.WriteHeapProfile(f); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	svcs, _ := svcCount.Load("n")

	// Edits at scale: each waits for its own snapshot.
	var lat []time.Duration
	for i := range 20 {
		ns := fmt.Sprintf("scale-%04d", (i*37)%n)
		principal := fmt.Sprintf("cluster.local/ns/%s/sa/edited%d", ns, i)
		ap, err := dyn.Resource(apGVR).Namespace(ns).Get(ctx, "p0", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		rules := ap.Object["spec"].(map[string]any)["rules"].([]any)
		rules[0].(map[string]any)["from"] = []any{map[string]any{"source": map[string]any{"principals": []any{principal}}}}
		t0 := time.Now()
		if _, err := dyn.Resource(apGVR).Namespace(ns).Update(ctx, ap, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, ch, 10*time.Second, "the edit", func(s *config.Snapshot) bool {
			r, ok := find(s, config.KindAuthorizationPolicy, ns+"/p0")
			return ok && strings.Contains(fmt.Sprint(r.Spec), principal)
		})
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	summary := fmt.Sprintf("kubesource scale: namespaces=%d policies=%d pods=%d services=%v first_snapshot=%s heap_mib=%.1f (source %.1f) rss_mib=%.1f (before %.1f) edit_p50=%s edit_max=%s",
		n, 10*n, 10*n, svcs, synced.Round(time.Millisecond), mib(heapAfter), mib(heapAfter-heapBefore), mib(rssAfter), mib(rssBefore),
		lat[len(lat)/2].Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))
	t.Log(summary)
	fmt.Fprintln(os.Stderr, summary)
}

// memory returns the heap in use after a GC and the process's RSS.
func memory() (heap, rss uint64) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kb uint64
			fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(v), " kB"), &kb)
			rss = kb << 10
		}
	}
	return ms.HeapInuse, rss
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }
