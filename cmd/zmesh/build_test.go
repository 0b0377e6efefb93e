package main

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestReleaseBuildDeps guards the size of the binary that make build,
// bench/latency.sh and test/e2e produce. Every zmesh process maps the whole
// binary, so what it links shows up in each proxy's RSS. A package that
// executes templates (html/template, through grpc's request tracing in
// golang.org/x/net/trace) calls methods by name through reflection, and
// while one is linked the linker must keep every exported method of every
// type: ~4 MB more text and read-only data. The grpcnotrace tag leaves the
// tracing out; this test fails if something brings such a package back.
func TestReleaseBuildDeps(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go command")
	}
	out, err := exec.Command("go", "list", "-tags", "grpcnotrace", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := map[string]bool{}
	for _, p := range strings.Fields(string(out)) {
		deps[p] = true
	}
	if !deps["google.golang.org/grpc"] {
		t.Fatalf("go list -deps lists no google.golang.org/grpc; the check below would prove nothing:\n%s", out)
	}
	for _, bad := range []string{"golang.org/x/net/trace", "html/template"} {
		if deps[bad] {
			t.Errorf("the release build links %s (see the test's doc comment); find who imports it with: go list -tags grpcnotrace -deps -f '{{.ImportPath}} {{.Imports}}' . | grep %s", bad, bad)
		}
	}
}

// TestDataPlaneBuildDeps guards bin/zmesh-proxy, the build that `zmesh up`
// runs proxies with: it must link neither the control plane nor any
// Kubernetes client library (client-go alone doubles the binary, and each
// proxy's RSS with it), and must still build.
func TestDataPlaneBuildDeps(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go command")
	}
	out, err := exec.Command("go", "list", "-tags", "grpcnotrace,zmesh_dataplane", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if !slices.Contains(deps, "github.com/zmesh/zmesh/internal/proxy") {
		t.Fatalf("the data-plane build links no internal/proxy; the check below would prove nothing:\n%s", out)
	}
	for _, p := range deps {
		if strings.HasPrefix(p, "k8s.io/") || p == "github.com/zmesh/zmesh/internal/controlplane" || p == "html/template" {
			t.Errorf("the data-plane build links %s; find who imports it with: go list -tags grpcnotrace,zmesh_dataplane -deps -f '{{.ImportPath}} {{.Imports}}' . | grep %s", p, p)
		}
	}
	// As make build: static, no cgo.
	build := exec.Command("go", "build", "-tags", "grpcnotrace,zmesh_dataplane", "-o", t.TempDir()+"/zmesh-proxy", ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("CGO_ENABLED=0 go build -tags zmesh_dataplane: %v\n%s", err, out)
	}
}
