package policy_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDecisionCodeDoesNoIO keeps the packages that make the mesh's
// decisions (what a request may do, who a peer is, what config says) free of
// network code, so that the proxy and `zmesh check` share them and tests
// drive them without sockets (STYLE: domain logic free of I/O). Network I/O
// lives beside them: authn/jwksfetch, ca/csr, xds, proxy.
//
// None of them may depend on gRPC or Kubernetes clients at all, nor import
// net/http themselves. (net/http still appears among authn's dependencies
// through the JWT library's own JWK fetcher, which zmesh does not use.)
func TestDecisionCodeDoesNoIO(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not in PATH")
	}
	const mod = "github.com/zmesh/zmesh/internal/"
	pkgs := []string{"authn", "authz", "policy", "config", "identity", "registry", "pemcert"}
	args := []string{"list", "-deps", "-f", "{{.ImportPath}} {{join .Imports \" \"}}"}
	for _, p := range pkgs {
		args = append(args, mod+p)
	}
	out, err := exec.Command(goBin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	decision := map[string]bool{}
	for _, p := range pkgs {
		decision[mod+p] = true
	}
	seen := 0
	for line := range strings.Lines(string(out)) {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		dep := fields[0]
		if strings.HasPrefix(dep, "google.golang.org/grpc") || strings.HasPrefix(dep, "k8s.io/") {
			t.Errorf("the decision packages depend on %s", dep)
		}
		if !decision[dep] {
			continue
		}
		seen++
		for _, imp := range fields[1:] {
			if imp == "net/http" {
				t.Errorf("%s imports %s", dep, imp)
			}
		}
	}
	if seen != len(pkgs) {
		t.Fatalf("go list listed %d of the %d decision packages:\n%s", seen, len(pkgs), out)
	}
}
