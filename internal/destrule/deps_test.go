package destrule

import (
	"os/exec"
	"strings"
	"testing"
)

// TestPure holds the package to its doc: a decision package imports no
// network, gRPC or Kubernetes code.
func TestPure(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep == "net/http" || strings.HasPrefix(dep, "google.golang.org/grpc") || strings.HasPrefix(dep, "k8s.io/") {
			t.Errorf("destrule depends on %s", dep)
		}
	}
}
