package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// childPID finds the process that zmesh up started with all the given
// words on its command line.
func childPID(t *testing.T, words ...string) int {
	t.Helper()
	pid := childPIDOrZero(words...)
	if pid == 0 {
		t.Fatalf("no process with %q", words)
	}
	return pid
}

// TestControlPlaneLossKeepsMeshServing kills the control plane outright:
// proxies keep serving with their last good config and certificates, and
// once zmesh up has restarted the control plane they resync on their own,
// so a policy edit made afterwards still reaches them.
func TestControlPlaneLossKeepsMeshServing(t *testing.T) {
	m := startMesh(t)
	frontend, stranger := m.w("web/frontend"), m.w("web/stranger")
	cp := childPID(t, zmeshBin, "controlplane", m.dir)
	if err := syscall.Kill(cp, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// While the control plane is down (or restarting), policy still holds.
	for range 20 {
		if r := call(t, frontend.app, "backend.api/"); r.Status != 200 {
			t.Fatalf("frontend got %d with the control plane down\n%s", r.Status, m.Logs())
		}
		if r := call(t, stranger.app, "backend.api/"); r.Status != 403 {
			t.Fatalf("stranger got %d with the control plane down, want 403 (last good policy)", r.Status)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The restarted control plane pushes new config to the reconnected proxies.
	deadline := time.Now().Add(20 * time.Second)
	for childPIDOrZero(zmeshBin, "controlplane", m.dir) == cp || childPIDOrZero(zmeshBin, "controlplane", m.dir) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("control plane not restarted\n%s", m.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	policy := filepath.Join(m.dir, "backend-authz.yaml")
	orig, _ := os.ReadFile(policy)
	writeFile(t, policy, strings.Replace(string(orig), `principals: ["cluster.local/ns/web/sa/frontend"]`,
		`principals: ["cluster.local/ns/web/sa/frontend", "cluster.local/ns/web/sa/stranger"]`, 1))
	waitStatus(t, stranger.app, "backend.api/", 200, 15*time.Second)
}

// TestProxyRestartIsolated kills one proxy: zmesh up restarts it and it
// serves again, while the other workloads keep working meanwhile.
func TestProxyRestartIsolated(t *testing.T) {
	m := startMesh(t)
	frontend := m.w("web/frontend")
	pid := childPID(t, zmeshBin, "proxy", "--name stranger")
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if r := call(t, frontend.app, "backend.api/"); r.Status != 200 {
		t.Fatalf("frontend got %d while another proxy was down", r.Status)
	}
	waitStatus(t, m.w("web/stranger").app, "backend.api/", 403, 20*time.Second)
}

// childPIDOrZero is childPID that answers 0 when no process matches.
func childPIDOrZero(words ...string) int {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		cmdline := strings.ReplaceAll(string(b), "\x00", " ")
		all := true
		for _, w := range words {
			all = all && strings.Contains(cmdline, w)
		}
		if all {
			pid, _ := strconv.Atoi(e.Name())
			return pid
		}
	}
	return 0
}
