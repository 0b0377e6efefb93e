package controlplane

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoDataPlane keeps the arrow one way: the control plane validates
// what it pushes with the same pure packages the proxies compile it with
// (meshtls, extauthz, config), and never links the data plane itself.
func TestNoDataPlane(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list unavailable: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep == "github.com/zmesh/zmesh/internal/proxy" || strings.HasPrefix(dep, "github.com/zmesh/zmesh/internal/proxy/") {
			t.Errorf("the control plane depends on %s", dep)
		}
	}
}
