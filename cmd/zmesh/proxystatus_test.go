package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zmesh/zmesh/internal/localmesh"
)

func runProxyStatus(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := proxyStatusCmd()
	var out bytes.Buffer
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

// TestProxyStatusFindsUp: without --controlplane-admin, proxy-status asks
// the control plane a running `zmesh up` recorded (not 15014, where `up`'s
// is not); a state file of a dead process is ignored; with nothing
// running, the error says what to pass.
func TestProxyStatusFindsUp(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/debug/proxy-status" {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode([]proxyStatus{{ID: "api/backend", Identity: "spiffe://cluster.local/ns/api/sa/backend", AckedVersion: "v1", Synced: true}})
	}))
	defer srv.Close()

	_, err := runProxyStatus(t)
	if err == nil || !strings.Contains(err.Error(), "--controlplane-admin") || !strings.Contains(err.Error(), "no running `zmesh up`") {
		t.Fatalf("nothing running: err = %v", err)
	}

	dir := upStateDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	write := func(name string, st localmesh.State) {
		data, _ := json.Marshal(st)
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("up-999999999.json", localmesh.State{PID: 999999999, ControlPlaneAdmin: "127.0.0.1:1"}) // dead
	write("up-self.json", localmesh.State{PID: os.Getpid(), ControlPlaneAdmin: strings.TrimPrefix(srv.URL, "http://")})
	out, err := runProxyStatus(t)
	if err != nil {
		t.Fatalf("with a running up: %v", err)
	}
	if !strings.Contains(out, "api/backend") || !strings.Contains(out, "SYNCED") {
		t.Errorf("output:\n%s", out)
	}
	// An explicit address wins over the state file.
	if _, err := runProxyStatus(t, "--controlplane-admin", "127.0.0.1:1"); err == nil {
		t.Error("--controlplane-admin 127.0.0.1:1 was ignored")
	}
}
