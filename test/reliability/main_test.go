// Package reliability is zmesh's reliability suite: a two-pair mesh under
// steady fortio load (500 rps by default), faults injected one after
// another, and for each the requests, the failed ones, p99 and the time
// to recover. The short form runs in CI (`go test ./test/reliability/`,
// about 3 minutes, root-only faults skipped without root); the full form
// and the soak run from bench/reliability.sh with longer durations given
// as flags after -args. Results go to docs/reliability.md by hand from
// the table the run prints (and writes to -out).
package reliability

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// fortioVersion is the fortio that bench/latency.sh uses too (DESIGN §7:
// later versions need a module the proxy here refuses).
const fortioVersion = "v1.66.2"

var (
	flagRPS     = flag.Int("rps", 500, "total steady load, split evenly over the two pairs")
	flagOutage  = flag.Duration("outage", 15*time.Second, "how long the control plane stays unreachable (full form: 10m)")
	flagSoak    = flag.Duration("soak", 0, "run TestSoak for this long (0 skips it)")
	flagOut     = flag.String("out", "", "directory for results (faults.md, soak.csv, soak.svg, fortio logs); default a temporary one")
	flagFaults  = flag.String("faults", "", "comma-separated faults to run (default all): "+faultNames())
	flagCertTTL = flag.Duration("cert-ttl", 10*time.Second, "workload certificate lifetime of the main mesh")
)

// bins are the binaries the suite runs, built once.
var bins struct{ zmesh, fortio string }

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "zmesh-reliability-")
	if err != nil {
		panic(err)
	}
	if *flagOut == "" {
		*flagOut = filepath.Join(dir, "out")
	}
	code := 1
	if err := build(dir); err != nil {
		fmt.Fprintln(os.Stderr, "reliability:", err)
	} else {
		code = m.Run()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// build makes zmesh and its data-plane build side by side (as make build
// does, so that zmesh up runs proxies with the smaller one), and installs
// fortio at the pinned version.
func build(dir string) error {
	bins.zmesh = filepath.Join(dir, "zmesh")
	bins.fortio = filepath.Join(dir, "fortio")
	steps := [][]string{
		{"go", "build", "-tags", "grpcnotrace", "-trimpath", "-o", bins.zmesh, "../../cmd/zmesh"},
		{"go", "build", "-tags", "grpcnotrace,zmesh_dataplane", "-trimpath", "-o", filepath.Join(dir, "zmesh-proxy"), "../../cmd/zmesh"},
		{"go", "install", "fortio.org/fortio@" + fortioVersion},
	}
	for _, s := range steps {
		cmd := exec.Command(s[0], s[1:]...)
		cmd.Env = append(os.Environ(), "GOBIN="+dir)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%v: %w", s, err)
		}
	}
	return nil
}

// outDir returns the results directory, made on first use.
func outDir(t *testing.T) string {
	t.Helper()
	if err := os.MkdirAll(*flagOut, 0o755); err != nil {
		t.Fatal(err)
	}
	return *flagOut
}
