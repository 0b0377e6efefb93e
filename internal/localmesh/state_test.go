package localmesh

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zmesh/zmesh/examples"
	"github.com/zmesh/zmesh/internal/meshdir"
)

// TestUnpackQuickstart: the quickstart built into the binary unpacks into
// a directory meshdir.Load reads, with its three workloads.
func TestUnpackQuickstart(t *testing.T) {
	dir := t.TempDir()
	if err := Unpack(examples.Quickstart(), dir); err != nil {
		t.Fatal(err)
	}
	ws, err := meshdir.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != 3 {
		t.Fatalf("workloads = %d, want 3", len(ws))
	}
	want, _ := filepath.Glob("../../examples/quickstart/*.yaml")
	got, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if len(got) != len(want) || len(want) == 0 {
		t.Errorf("unpacked %d files, the checkout has %d", len(got), len(want))
	}
}

func TestStateRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "up-1.json")
	st := &State{PID: 1, ControlPlaneAdmin: "127.0.0.1:2", Workloads: []StateWorkload{{Name: "b", Namespace: "api", Admin: "127.0.0.1:3"}}}
	if err := writeState(path, st); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("state file: %v %v", info, err)
	}
	got, err := ReadState(path)
	if err != nil || got.ControlPlaneAdmin != "127.0.0.1:2" || len(got.Workloads) != 1 || got.Workloads[0].Admin != "127.0.0.1:3" {
		t.Fatalf("read back %+v, %v", got, err)
	}
}

// TestHints: the commands after `zmesh: ready` call a service of another
// workload from an echo app, and name the tools and the log file.
func TestHints(t *testing.T) {
	members := []member{
		{Workload: Workload{Name: "frontend", Namespace: "web", Services: []string{"frontend"}, Command: []string{"zmesh", "echo"}}, app: "127.0.0.1:1", admin: "127.0.0.1:4"},
		{Workload: Workload{Name: "backend", Namespace: "api", Services: []string{"backend"}, Command: []string{"zmesh", "echo"}}, app: "127.0.0.1:2"},
	}
	var b strings.Builder
	writeHints(&b, Config{LogFile: "/run/zmesh/up-1.log"}, "/mesh", members)
	for _, want := range []string{
		"curl http://127.0.0.1:1/call/backend.api.svc.cluster.local/",
		"zmesh proxy-status", "zmesh describe workload web/frontend", "zmesh cert inspect --admin 127.0.0.1:4",
		"zmesh analyze -f /mesh", "tail -f /run/zmesh/up-1.log",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("hints lack %q:\n%s", want, b.String())
		}
	}
	if strings.Contains(b.String(), "zmesh: ") {
		t.Errorf("hints must not look like contract lines:\n%s", b.String())
	}
}
