package extauthz

import (
	"os/exec"
	"strings"
	"testing"
)

// TestModelLinksNoClient keeps the provider model pure: the control plane
// validates mesh configs with Compile and must not link the client that
// asks providers (package client), gRPC, or the proxy.
func TestModelLinksNoClient(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list unavailable: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "google.golang.org/grpc") ||
			strings.HasPrefix(dep, "github.com/zmesh/zmesh/internal/extauthz/") ||
			dep == "github.com/zmesh/zmesh/internal/proxy" {
			t.Errorf("extauthz depends on %s", dep)
		}
	}
}
