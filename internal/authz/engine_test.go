package authz

import (
	"os/exec"
	"strings"
	"sync"
	"testing"
)

// Habit 3: deciding allocates nothing. Enforced here, not only reported by
// the benchmarks.
func TestDecideDoesNotAllocate(t *testing.T) {
	e := mustCompile(t, Options{PathNormalization: NormalizeMergeSlashes}, benchPolicies(t, 100)...)
	dry := mustCompile(t, Options{}, ap(t, "foo/dry", `{"action":"DENY","rules":[{"when":[{"key":"request.auth.claims[groups]","values":["x"]}]}]}`, DryRunAnnotation, "true"))
	reqs := map[string]*Request{
		"HTTP, last of 100 rules": httpReq(from("cluster.local/ns/ns-99/sa/sa-99"), path("/api/99/x?q=1"), headers("X-A", "b")),
		"HTTP, no rule matches":   httpReq(from("cluster.local/ns/zzz/sa/x")),
		"TCP":                     tcpReq(),
		"plaintext":               httpReq(from("")),
	}
	for name, r := range reqs {
		if n := testing.AllocsPerRun(100, func() { e.Decide(r) }); n != 0 {
			t.Errorf("%s: %v allocations per decision, want 0", name, n)
		}
	}
	r := httpReq(jwt("iss/sub", map[string]any{"groups": []any{"a", "x"}}))
	if n := testing.AllocsPerRun(100, func() { dry.Decide(r) }); n != 0 {
		t.Errorf("dry-run with claims: %v allocations per decision, want 0", n)
	}
}

// An Engine is immutable and may be shared by every connection.
func TestDecideConcurrently(t *testing.T) {
	e := mustCompile(t, Options{}, benchPolicies(t, 50)...)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				if d := e.Decide(httpReq(from("cluster.local/ns/ns-7/sa/sa-7"), path("/api/7/a"))); !d.Allow {
					t.Errorf("denied: %+v", d)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// Habit 16: a decision package imports no net/http, gRPC or Kubernetes.
func TestLayering(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list unavailable: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep == "net/http" || strings.HasPrefix(dep, "google.golang.org/grpc") || strings.HasPrefix(dep, "k8s.io/") || dep == "net" {
			t.Errorf("authz depends on %s", dep)
		}
	}
}
