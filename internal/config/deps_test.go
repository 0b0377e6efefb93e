package config

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLayering enforces that config stays a pure model package: no network
// or Kubernetes client code may be linked into it (STYLE.md, habit 16).
func TestLayering(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list unavailable: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep == "net/http" || dep == "net" || strings.HasPrefix(dep, "google.golang.org/grpc") || strings.HasPrefix(dep, "k8s.io/") {
			t.Errorf("config depends on %s", dep)
		}
	}
}
