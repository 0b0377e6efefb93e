package xds_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestViewBuilderDoesNoIO keeps the view builder pure (STYLE habit 16): it
// must not depend on gRPC, net/http or Kubernetes; the stream lives in
// xds/server and xds/client.
func TestViewBuilderDoesNoIO(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list unavailable: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep == "net/http" || strings.HasPrefix(dep, "google.golang.org/grpc") || strings.HasPrefix(dep, "k8s.io/") {
			t.Errorf("internal/xds depends on %s", dep)
		}
	}
}
