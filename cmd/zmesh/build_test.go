package main

import (
	"os/exec"
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
