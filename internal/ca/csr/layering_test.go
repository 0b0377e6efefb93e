package csr_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestCSRServiceImportsNoKubernetes keeps the CSR service usable without
// Kubernetes: the TokenReview authenticator plugs in from ca/kubeauth, the
// only CA package besides ca/kubesecret, ca/kubebundle and ca/kubelease
// that may import k8s.io.
func TestCSRServiceImportsNoKubernetes(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not in PATH")
	}
	out, err := exec.Command(goBin, "list", "-deps", "github.com/zmesh/zmesh/internal/ca/csr", "github.com/zmesh/zmesh/internal/ca/catest").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "k8s.io/") || strings.Contains(dep, "/internal/ca/kube") {
			t.Errorf("internal/ca/csr depends on %s", dep)
		}
	}
}
