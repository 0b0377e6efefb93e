package proxy

import (
	"testing"
	"time"

	"github.com/zmesh/zmesh/internal/destrule"
	"github.com/zmesh/zmesh/internal/registry"
)

// compiledRoute compiles one service of three endpoints (two v1, one v2)
// under the DestinationRule yaml, as a proxy in namespace web would.
func compiledRoute(t *testing.T, yaml string) *route {
	t.Helper()
	svc := registry.Service{Hostname: "reviews.bookinfo.svc.cluster.local", Namespace: "bookinfo", Endpoints: []registry.Endpoint{
		{Address: "127.0.0.1:1", Labels: map[string]string{"version": "v1"}},
		{Address: "127.0.0.1:2", Labels: map[string]string{"version": "v2"}},
		{Address: "127.0.0.1:3", Labels: map[string]string{"version": "v1"}},
	}}
	rt, err := buildRoutes([]registry.Service{svc}, "web", "cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	if err := applyDestinationRules(rt, []registry.Service{svc}, parse(t, yaml), destrule.Client{Namespace: "web"}, "", time.Now); err != nil {
		t.Fatal(err)
	}
	return rt.lookup("reviews.bookinfo.svc.cluster.local")
}

func reviewsDR(spec string) string {
	return "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews, namespace: bookinfo}\nspec:\n  host: reviews\n" + spec
}

// TestSubsetsAndLoadBalancing: a subset's requests go to its members
// only, an undefined subset gets no endpoint, and loadBalancer.simple
// picks among them as Istio's (round robin by default, random, least
// requests in flight).
func TestSubsetsAndLoadBalancing(t *testing.T) {
	rt := compiledRoute(t, reviewsDR(`  trafficPolicy: {loadBalancer: {simple: RANDOM}}
  subsets:
  - {name: v1, labels: {version: v1}, trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}}
  - {name: v2, labels: {version: v2}}
`))
	seen := map[string]int{}
	for range 100 {
		ep, _ := rt.pickAt("v1", 0)
		seen[ep.addr]++
	}
	if len(seen) != 2 || seen["127.0.0.1:1"] != 50 || seen["127.0.0.1:3"] != 50 {
		t.Errorf("subset v1, round robin: %v", seen)
	}
	for range 20 {
		if ep, _ := rt.pickAt("v2", 80); ep.addr != "127.0.0.1:2" {
			t.Fatalf("subset v2 picked %s", ep.addr)
		}
	}
	if ep, _ := rt.pickAt("v3", 0); ep != nil {
		t.Errorf("undefined subset picked %s", ep.addr)
	}
	seen = map[string]int{}
	for range 300 {
		ep, _ := rt.pickAt("", 0)
		seen[ep.addr]++
	}
	if len(seen) != 3 {
		t.Errorf("host, random: %v", seen)
	}

	rt = compiledRoute(t, reviewsDR("  trafficPolicy: {loadBalancer: {simple: LEAST_REQUEST}}\n"))
	busy, _ := rt.pickAt("", 0)
	busy.active.Add(100)
	wins := 0
	for range 900 {
		if ep, _ := rt.pickAt("", 0); ep.addr == busy.addr {
			wins++
		}
	}
	// Power of two choices: the busy endpoint wins only when drawn twice,
	// 1/9 of the picks (100 of 900 on average).
	if wins > 180 {
		t.Errorf("least request: the endpoint with 100 requests in flight was picked %d times of 900", wins)
	}
}
