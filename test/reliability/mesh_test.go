package reliability

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// workload is one `zmesh: workload` contract line.
type workload struct {
	name, app, inbound, admin, outbound, netns string
}

// mesh is a running `zmesh up --verbose` on a copy of testdata/mesh.
type mesh struct {
	t         *testing.T
	cmd       *exec.Cmd
	dir       string // the mesh directory, which the test edits
	dataDir   string
	grpc      string
	cpAdmin   string
	workloads map[string]workload

	mu   sync.Mutex
	logs strings.Builder
	done chan struct{}
}

var workloadLine = regexp.MustCompile(`^zmesh: workload (\S+) app=(\S+) inbound=(\S+) admin=(\S+) outbound=(\S+)`)

// startMesh runs zmesh up on a copy of testdata/mesh with args and waits
// for `zmesh: ready`; the mesh stops when the test ends.
func startMesh(t *testing.T, args ...string) *mesh {
	t.Helper()
	dir := t.TempDir()
	copyMesh(t, dir)
	m := &mesh{t: t, dir: dir, workloads: map[string]workload{}, done: make(chan struct{})}
	m.cmd = exec.Command(bins.zmesh, append([]string{"up", "--verbose", "-f", dir}, args...)...)
	m.cmd.Env = append(os.Environ(), "HTTP_PROXY=", "http_proxy=")
	stdout, err := m.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	m.cmd.Stderr = logWriter{m}
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { m.cmd.Wait(); close(m.done) }()
	t.Cleanup(m.stop)
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			m.mu.Lock()
			m.logs.WriteString("stdout: " + line + "\n")
			if g := workloadLine.FindStringSubmatch(line); g != nil {
				w := workload{name: g[1], app: g[2], inbound: g[3], admin: g[4], outbound: g[5]}
				w.netns = field(line, "netns")
				m.workloads[g[1]] = w
			}
			if strings.HasPrefix(line, "zmesh: controlplane ") {
				m.grpc, m.cpAdmin, m.dataDir = field(line, "grpc"), field(line, "admin"), field(line, "data")
			}
			m.mu.Unlock()
			if line == "zmesh: ready" {
				ready <- true
			}
		}
		ready <- false
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("zmesh up closed stdout before ready\n%s", m.Logs())
		}
	case <-time.After(90 * time.Second):
		t.Fatalf("zmesh up not ready after 90s\n%s", m.Logs())
	}
	return m
}

// copyMesh copies testdata/mesh into dir, which a test may then edit.
func copyMesh(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir("testdata/mesh")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("testdata/mesh", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, e.Name()), string(b))
	}
}

// field returns the value of key=VALUE on a contract line.
func field(line, key string) string {
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return v
		}
	}
	return ""
}

type logWriter struct{ m *mesh }

func (w logWriter) Write(b []byte) (int, error) {
	w.m.mu.Lock()
	defer w.m.mu.Unlock()
	w.m.logs.Write(b)
	return len(b), nil
}

// Logs returns what zmesh up printed so far.
func (m *mesh) Logs() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.logs.String()
}

// stop interrupts zmesh up as Ctrl-C would and waits for it.
func (m *mesh) stop() {
	select {
	case <-m.done:
		return
	default:
	}
	_ = m.cmd.Process.Signal(os.Interrupt)
	select {
	case <-m.done:
	case <-time.After(30 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.done
		m.t.Errorf("zmesh up did not stop within 30s of an interrupt")
	}
}

func (m *mesh) w(name string) workload {
	m.t.Helper()
	w, ok := m.workloads[name]
	if !ok {
		m.t.Fatalf("no workload %s", name)
	}
	return w
}

// pid returns the process zmesh up started whose command line holds
// every word, and is not a zombie; 0 if none.
func (m *mesh) pid(words ...string) int {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		cmdline := strings.ReplaceAll(string(b), "\x00", " ")
		all := strings.Contains(cmdline, m.dir) || strings.Contains(cmdline, m.grpc)
		for _, w := range words {
			all = all && strings.Contains(cmdline, w)
		}
		if all && running(pid) {
			return pid
		}
	}
	return 0
}

// cpPID is the control plane's process.
func (m *mesh) cpPID() int { return m.pid("controlplane", "--config-dir") }

// proxyPID is the proxy of workload NS/NAME.
func (m *mesh) proxyPID(name string) int {
	ns, n, _ := strings.Cut(name, "/")
	return m.pid(" proxy ", "--name "+n+" ", "--namespace "+ns+" ")
}

// running reports whether pid is a live process, not a zombie.
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && i+2 < len(b) && b[i+2] != 'Z' && b[i+2] != 'X'
}

// signal sends sig to pid, failing the test if it cannot.
func signal(t *testing.T, pid int, sig syscall.Signal) {
	t.Helper()
	if pid == 0 {
		t.Fatalf("no process to send %v to", sig)
	}
	if err := syscall.Kill(pid, sig); err != nil {
		t.Fatal(err)
	}
}

// synced reports whether proxy-status lists n proxies SYNCED.
func (m *mesh) synced(n int) bool {
	out, err := exec.Command(bins.zmesh, "proxy-status", "--controlplane-admin", m.cpAdmin).CombinedOutput()
	return err == nil && strings.Count(string(out), "SYNCED") == n
}

// waitFor polls cond every 50 ms until it holds, and returns when it
// did; it fails the test after within.
func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) time.Time {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %s", what, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Now()
}

var plain = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}

// ready reports whether the proxy at admin answers /ready with 200.
func ready(admin string) bool {
	resp, err := plain.Get("http://" + admin + "/ready")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == 200
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
