// Command gen copies Istio's CRDs from the istio.io/api module (at the
// version go.mod requires) into istio-crds.gen.yaml, unchanged below a
// header naming their origin and license. Run it with
// `go generate ./internal/kubecrd`.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/zmesh/zmesh/internal/kubecrd/internal/source"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "kubecrd gen:", err)
		os.Exit(1)
	}
}

func run() error {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Version}} {{.Dir}}", source.Module).Output()
	if err != nil {
		return fmt.Errorf("go list -m %s: %w", source.Module, err)
	}
	version, dir, ok := strings.Cut(strings.TrimSpace(string(out)), " ")
	if !ok || dir == "" {
		return fmt.Errorf("module %s is not downloaded (go mod download %s)", source.Module, source.Module)
	}
	data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(source.Path)))
	if err != nil {
		return err
	}
	return os.WriteFile(source.File, append([]byte(source.Header(version)), data...), 0o644)
}
