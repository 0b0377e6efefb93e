package route

import (
	"net/textproto"
	"os/exec"
	"strings"
	"testing"
)

// TestLayering keeps route a pure decision package: no network, gRPC or
// Kubernetes code linked in (STYLE.md, habit 16).
func TestLayering(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list unavailable: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep == "net/http" || dep == "net" || strings.HasPrefix(dep, "google.golang.org/grpc") || strings.HasPrefix(dep, "k8s.io/") {
			t.Errorf("route depends on %s", dep)
		}
	}
}

func TestCanonicalHeaderAsTextproto(t *testing.T) {
	for _, h := range []string{"end-user", "X-FORWARDED-for", "x", "", "a--b", "-a", "x_y", "with space", "ünicode", "content-type", "TE"} {
		if got, want := canonicalHeader(h), textproto.CanonicalMIMEHeaderKey(h); got != want {
			t.Errorf("canonicalHeader(%q) = %q, want %q", h, got, want)
		}
	}
}
