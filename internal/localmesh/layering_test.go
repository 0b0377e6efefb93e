package localmesh_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoKubernetesClient keeps localmesh free of Kubernetes libraries:
// Kubernetes mode reaches the cluster through the Cluster interface, which
// localmesh/kubecluster implements, so the local mesh without a cluster
// (and its tests) links none of client-go.
func TestNoKubernetesClient(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not in PATH")
	}
	out, err := exec.Command(goBin, "list", "-deps", "github.com/zmesh/zmesh/internal/localmesh").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "github.com/zmesh/zmesh/internal/localmesh\n") {
		t.Fatalf("go list did not list localmesh:\n%s", out)
	}
	for dep := range strings.Lines(string(out)) {
		if strings.HasPrefix(dep, "k8s.io/") {
			t.Errorf("localmesh depends on %s", strings.TrimSpace(dep))
		}
	}
}
