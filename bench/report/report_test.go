package main

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// TestReportGolden renders recorded runs: one complete with the three
// cases, one from before CASES was recorded whose mesh case has not run
// yet, and one whose haproxy case was skipped. The complete run's server
// proxy was restarted mid-case (pid 21 -> 22): its peak RSS still counts,
// its CPU only from the restart; its haproxy samples come first in
// samples.tsv but are listed after the mesh's, and its haproxy processes
// are not counted in the goals, which are about zmesh.
func TestReportGolden(t *testing.T) {
	for _, name := range []string{"run", "pending", "skipped"} {
		t.Run(name, func(t *testing.T) {
			var out strings.Builder
			if err := report(&out, filepath.Join("testdata", name)); err != nil {
				t.Fatalf("report: %v", err)
			}
			golden := filepath.Join("testdata", name+".golden.md")
			if *update {
				if err := os.WriteFile(golden, []byte(out.String()), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if out.String() != string(want) {
				t.Errorf("report differs from %s (go test -update to accept):\n%s", golden, out.String())
			}
		})
	}
}

func TestReportNeedsMeta(t *testing.T) {
	if err := report(&strings.Builder{}, t.TempDir()); err == nil {
		t.Error("report of an empty directory = nil, want an error")
	}
}
