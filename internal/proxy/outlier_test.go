package proxy

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/registry"
	"github.com/zmesh/zmesh/internal/xds"
)

// fakeClock is a clock a test moves.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestOutlierDetection(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	policy := func(n int, od *networking.OutlierDetection) *destPolicy {
		d := &destPolicy{}
		for i := range n {
			d.eps = append(d.eps, endpoint{addr: fmt.Sprint(i), active: new(atomic.Int64)})
		}
		d.od = newOutlierDetector(od, n, clock.now)
		for i := range d.eps {
			d.eps[i].health = &hostHealth{od: d.od}
		}
		return d
	}
	picks := func(d *destPolicy) map[string]int {
		out := map[string]int{}
		for range 30 {
			out[d.pick().addr]++
		}
		return out
	}

	d := policy(3, &networking.OutlierDetection{Consecutive_5XxErrors: wrapperspb.UInt32(2), BaseEjectionTime: durationpb.New(30 * time.Second), MaxEjectionPercent: 100})
	bad := &d.eps[0]
	bad.health.report(500)
	bad.health.report(200) // a success resets the count
	bad.health.report(500)
	if p := picks(d); p["0"] != 10 {
		t.Fatalf("not yet ejected: %v", p)
	}
	bad.health.report(500)
	if p := picks(d); p["0"] != 0 || p["1"]+p["2"] != 30 {
		t.Fatalf("after 2 consecutive 5xx: %v, want endpoint 0 ejected", p)
	}
	clock.add(29 * time.Second)
	if picks(d)["0"] != 0 {
		t.Fatal("back before baseEjectionTime")
	}
	clock.add(2 * time.Second)
	if picks(d)["0"] == 0 {
		t.Fatal("not back after baseEjectionTime")
	}
	// A second ejection lasts twice as long.
	bad.health.report(503)
	bad.health.report(503)
	clock.add(31 * time.Second)
	if picks(d)["0"] != 0 {
		t.Fatal("a second ejection ended after one baseEjectionTime")
	}
	clock.add(30 * time.Second)
	if picks(d)["0"] == 0 {
		t.Fatal("not back after twice baseEjectionTime")
	}

	// maxEjectionPercent (default 10%) still ejects one of three, no more.
	d = policy(3, &networking.OutlierDetection{Consecutive_5XxErrors: wrapperspb.UInt32(1)})
	d.eps[0].health.report(500)
	d.eps[1].health.report(500)
	if p := picks(d); p["0"] != 0 || p["1"] == 0 {
		t.Errorf("maxEjectionPercent: %v, want only endpoint 0 out", p)
	}

	// Gateway errors only: a 500 does not count, 502/503/504 do.
	d = policy(2, &networking.OutlierDetection{Consecutive_5XxErrors: wrapperspb.UInt32(0), ConsecutiveGatewayErrors: wrapperspb.UInt32(2), MaxEjectionPercent: 100})
	d.eps[0].health.report(500)
	d.eps[0].health.report(500)
	if picks(d)["0"] == 0 {
		t.Error("500s ejected under consecutiveGatewayErrors only")
	}
	d.eps[0].health.report(502)
	d.eps[0].health.report(504)
	if picks(d)["0"] != 0 {
		t.Error("two gateway errors did not eject")
	}

	// Every endpoint out: all are used again (panic), none refused.
	d = policy(2, &networking.OutlierDetection{Consecutive_5XxErrors: wrapperspb.UInt32(1), MaxEjectionPercent: 100})
	d.eps[0].health.report(500)
	d.eps[1].health.report(500)
	if p := picks(d); p["0"]+p["1"] != 30 {
		t.Errorf("all ejected: %v", p)
	}

	if newOutlierDetector(&networking.OutlierDetection{Consecutive_5XxErrors: wrapperspb.UInt32(0)}, 3, clock.now) != nil {
		t.Error("a detector with every check off")
	}
}

// TestDestinationRuleOutlierDetection: of two endpoints, the one that
// answers 500 is ejected after consecutive5xxErrors and the rest of the
// requests go to the healthy one.
func TestDestinationRuleOutlierDetection(t *testing.T) {
	p := newPair(t, "")
	var broken atomic.Int32
	sick := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		broken.Add(1)
		w.WriteHeader(500)
	}))
	t.Cleanup(sick.Close)
	svc := serviceOf(p.server)
	svc.Endpoints = append(svc.Endpoints, registry.Endpoint{Address: sick.Listener.Addr().String(), Workload: "api/sick"})
	yaml := backendDR("  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}, outlierDetection: {consecutive5xxErrors: 2, maxEjectionPercent: 50, baseEjectionTime: 1h}}")
	snap := config.NewSnapshot("c2", parse(t, yaml))
	mustApply(t, p.client, xds.Build(snap, []registry.Service{svc}, mesh(), xds.Proxy{ID: "web/frontend", Workload: registry.Workload{Name: "frontend", Namespace: "web"}}))
	codes := map[int]int{}
	for range 20 {
		code, _ := get(t, p.http, "http://backend.api.svc.cluster.local/")
		codes[code]++
	}
	if broken.Load() != 2 || codes[500] != 2 || codes[200] != 18 {
		t.Errorf("codes %v, broken endpoint hit %d times; want it ejected after 2", codes, broken.Load())
	}
}
