package ca_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestSigningCoreImportsNoNetworkStack keeps the signing core free of gRPC
// and net/http (STYLE habit 16); the network side lives in ca/csr.
func TestSigningCoreImportsNoNetworkStack(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not in PATH")
	}
	out, err := exec.Command(goBin, "list", "-deps", "github.com/zmesh/zmesh/internal/ca").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep == "net/http" || strings.HasPrefix(dep, "google.golang.org/grpc") || strings.HasPrefix(dep, "k8s.io/") {
			t.Errorf("internal/ca depends on %s", dep)
		}
	}
}
