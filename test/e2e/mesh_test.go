package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// zmeshBin is the zmesh binary built once for the whole package.
var zmeshBin string

func TestMain(m *testing.M) {
	if runHelperApp() { // this binary started as a workload's app
		return
	}
	dir, err := os.MkdirTemp("", "zmesh-e2e-")
	if err != nil {
		panic(err)
	}
	zmeshBin = filepath.Join(dir, "zmesh")
	build := exec.Command("go", "build", "-tags", "grpcnotrace", "-trimpath", "-o", zmeshBin, "../../cmd/zmesh") // as make build
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build zmesh:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// workload is one `zmesh: workload` contract line.
type workload struct {
	app, inbound, admin, outbound string
	workloadAPI                   string // unix:///path of the SPIFFE Workload API
	tunnel                        string // the proxy's HBONE listener
}

// mesh is a running `zmesh up`.
type mesh struct {
	t         *testing.T
	cmd       *exec.Cmd
	dir       string   // the mesh directory (a copy the test may edit)
	args      []string // the arguments given after `zmesh up --verbose -f DIR`
	workloads map[string]workload
	grpc      string
	cpAdmin   string // the control plane's admin address

	mu   sync.Mutex
	logs strings.Builder // everything zmesh up printed on stderr
	done chan error
}

var workloadLine = regexp.MustCompile(`^zmesh: workload (\S+) app=(\S+) inbound=(\S+) admin=(\S+) outbound=(\S+)(?: workloadapi=(\S+))?`)

// startMesh copies examples/quickstart into a temporary directory, runs
// `zmesh up -f` on it with extra args, and waits for `zmesh: ready`.
func startMesh(t *testing.T, args ...string) *mesh {
	t.Helper()
	return startMeshWith(t, nil, args...)
}

// startMeshWith is startMesh with files (name to content) added to the
// mesh directory.
func startMeshWith(t *testing.T, files map[string]string, args ...string) *mesh {
	t.Helper()
	dir := t.TempDir()
	copyDir(t, "../../examples/quickstart", dir)
	for name, content := range files {
		writeFile(t, filepath.Join(dir, name), content)
	}
	return startMeshIn(t, dir, args...)
}

// copyDir copies the files of src into dir.
func copyDir(t *testing.T, src, dir string) {
	t.Helper()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// startMeshIn runs `zmesh up --verbose -f dir` with extra args and waits
// for `zmesh: ready`.
func startMeshIn(t *testing.T, dir string, args ...string) *mesh {
	t.Helper()
	m := &mesh{t: t, dir: dir, args: args, workloads: map[string]workload{}, done: make(chan error, 1)}
	m.cmd = exec.Command(zmeshBin, append([]string{"up", "--verbose", "-f", dir}, args...)...)
	m.cmd.Env = append(os.Environ(), "HTTP_PROXY=", "http_proxy=")
	stdout, err := m.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	m.cmd.Stderr = logWriter{m}
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { m.done <- m.cmd.Wait() }()
	t.Cleanup(m.stop)

	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			m.mu.Lock()
			m.logs.WriteString("stdout: " + line + "\n")
			if g := workloadLine.FindStringSubmatch(line); g != nil {
				w := workload{app: g[2], inbound: g[3], admin: g[4], outbound: g[5], workloadAPI: g[6]}
				if _, tail, ok := strings.Cut(line, " tunnel="); ok {
					w.tunnel = strings.Fields(tail)[0]
				}
				m.workloads[g[1]] = w
			}
			if strings.HasPrefix(line, "zmesh: controlplane grpc=") {
				m.grpc = strings.Fields(strings.TrimPrefix(line, "zmesh: controlplane grpc="))[0]
				if _, a, ok := strings.Cut(line, " admin="); ok {
					m.cpAdmin = strings.Fields(a)[0]
				}
			}
			m.mu.Unlock()
			if line == "zmesh: ready" {
				ready <- nil
			}
		}
		ready <- fmt.Errorf("zmesh up closed stdout before ready")
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatalf("%v\n%s", err, m.Logs())
		}
	case <-time.After(90 * time.Second):
		t.Fatalf("zmesh up not ready after 90s\n%s", m.Logs())
	}
	return m
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

// stop interrupts zmesh up as Ctrl-C would and waits for it to exit.
func (m *mesh) stop() {
	if m.cmd.ProcessState != nil {
		return
	}
	_ = m.cmd.Process.Signal(os.Interrupt)
	select {
	case <-m.done:
	case <-time.After(20 * time.Second):
		_ = m.cmd.Process.Kill()
		m.t.Errorf("zmesh up did not stop within 20s of an interrupt\n%s", m.Logs())
	}
}

func (m *mesh) w(name string) workload {
	m.t.Helper()
	w, ok := m.workloads[name]
	if !ok {
		m.t.Fatalf("no workload %s in %v", name, m.workloads)
	}
	return w
}

// callResult is the JSON that `zmesh echo`'s /call/ answers.
type callResult struct {
	Status int    `json:"status"`
	Body   string `json:"body"`
}

// echoReply is the JSON that `zmesh echo`'s / answers.
type echoReply struct {
	Name    string              `json:"name"`
	Path    string              `json:"path"`
	Headers map[string][]string `json:"headers"`
}

var plain = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}}

// call asks the app at appAddr to call target through its proxy.
func call(t *testing.T, appAddr, target string) callResult {
	t.Helper()
	r, err := tryCall(appAddr, target)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// tryCall is call that reports a failed call (the app or its proxy down)
// as an error.
func tryCall(appAddr, target string) (callResult, error) {
	var r callResult
	resp, err := plain.Get("http://" + appAddr + "/call/" + target)
	if err != nil {
		return r, fmt.Errorf("call %s via %s: %v", target, appAddr, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return r, fmt.Errorf("call %s via %s: app answered %d: %s", target, appAddr, resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return r, fmt.Errorf("call %s: bad JSON %q: %v", target, body, err)
	}
	return r, nil
}

func TestQuickstart(t *testing.T) {
	m := startMesh(t)
	frontend, stranger, backend := m.w("web/frontend"), m.w("web/stranger"), m.w("api/backend")

	t.Run("bytes on backend's inbound port are TLS", func(t *testing.T) {
		testWireIsTLS(t, frontend.app, backend.inbound)
	})
	t.Run("frontend calls backend over mTLS and backend sees its SPIFFE ID", func(t *testing.T) {
		r := call(t, frontend.app, "backend.api.svc.cluster.local/hello")
		if r.Status != 200 {
			t.Fatalf("status %d body %q", r.Status, r.Body)
		}
		var e echoReply
		if err := json.Unmarshal([]byte(r.Body), &e); err != nil {
			t.Fatalf("backend reply %q: %v", r.Body, err)
		}
		xfcc := strings.Join(e.Headers["X-Forwarded-Client-Cert"], ",")
		if !strings.Contains(xfcc, "URI=spiffe://cluster.local/ns/web/sa/frontend") {
			t.Fatalf("backend saw XFCC %q, want the frontend's SPIFFE ID", xfcc)
		}
		if e.Name != "backend" || e.Path != "/hello" {
			t.Fatalf("reached %q path %q, want backend /hello", e.Name, e.Path)
		}
	})
	t.Run("short names resolve as Istio resolves them", func(t *testing.T) {
		for _, host := range []string{"backend.api", "backend.api.svc", "backend.api.svc.cluster.local:80"} {
			if r := call(t, frontend.app, host+"/"); r.Status != 200 {
				t.Errorf("%s: status %d body %q", host, r.Status, r.Body)
			}
		}
	})
	t.Run("stranger is denied by the AuthorizationPolicy", func(t *testing.T) {
		r := call(t, stranger.app, "backend.api.svc.cluster.local/")
		if r.Status != 403 || !strings.Contains(r.Body, "RBAC: access denied") {
			t.Fatalf("status %d body %q, want 403 RBAC: access denied", r.Status, r.Body)
		}
	})
	t.Run("plaintext straight to backend inbound is refused", func(t *testing.T) {
		resp, err := plain.Get("http://" + backend.inbound + "/")
		if err == nil {
			resp.Body.Close()
			t.Fatalf("plaintext request answered %d, want the connection refused", resp.StatusCode)
		}
	})
	t.Run("TLS client without a mesh certificate fails the handshake", func(t *testing.T) {
		conn, err := net.DialTimeout("tcp", backend.inbound, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		tc := tlsClientNoCert(conn)
		if err := tc.Handshake(); err == nil {
			// TLS 1.3 reports a missing client certificate on the first read.
			tc.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := tc.Read(make([]byte, 1)); err == nil {
				t.Fatal("handshake without a client certificate succeeded")
			}
		}
	})
	t.Run("proxy-status lists every proxy in sync with its identity", func(t *testing.T) {
		out, err := exec.Command(zmeshBin, "proxy-status", "--controlplane-admin", m.cpAdmin).CombinedOutput()
		if err != nil {
			t.Fatalf("proxy-status: %v\n%s", err, out)
		}
		for _, want := range []string{
			"web/frontend", "spiffe://cluster.local/ns/web/sa/frontend",
			"web/stranger", "spiffe://cluster.local/ns/web/sa/stranger",
			"api/backend", "spiffe://cluster.local/ns/api/sa/backend",
		} {
			if !strings.Contains(string(out), want) {
				t.Errorf("proxy-status lacks %q:\n%s", want, out)
			}
		}
		if strings.Count(string(out), "SYNCED") != 3 {
			t.Errorf("want 3 proxies SYNCED:\n%s", out)
		}
	})
	t.Run("metrics carry Istio's names and labels", func(t *testing.T) {
		resp, err := plain.Get("http://" + backend.admin + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		text := string(b)
		for _, want := range []string{
			`istio_requests_total{`,
			`source_principal="spiffe://cluster.local/ns/web/sa/frontend"`,
			`destination_principal="spiffe://cluster.local/ns/api/sa/backend"`,
			`connection_security_policy="mutual_tls"`,
			`response_code="403"`,
		} {
			if !strings.Contains(text, want) {
				t.Errorf("backend /metrics lacks %s", want)
			}
		}
	})
}

// TestPolicyEditAppliesLive edits the AuthorizationPolicy while the mesh
// runs: a valid edit reaches the proxy within 2 seconds; a malformed one is
// rejected with a log line and the last good policy stays in force.
func TestPolicyEditAppliesLive(t *testing.T) {
	m := startMesh(t)
	stranger := m.w("web/stranger")
	if r := call(t, stranger.app, "backend.api/"); r.Status != 403 {
		t.Fatalf("before the edit stranger got %d, want 403", r.Status)
	}
	policy := filepath.Join(m.dir, "backend-authz.yaml")
	orig, err := os.ReadFile(policy)
	if err != nil {
		t.Fatal(err)
	}
	allowBoth := strings.Replace(string(orig), `principals: ["cluster.local/ns/web/sa/frontend"]`,
		`principals: ["cluster.local/ns/web/sa/frontend", "cluster.local/ns/web/sa/stranger"]`, 1)
	if allowBoth == string(orig) {
		t.Fatal("quickstart policy changed shape; update this test")
	}
	writeFile(t, policy, allowBoth)
	waitStatus(t, stranger.app, "backend.api/", 200, 2*time.Second)

	// A malformed edit (an unknown field) is rejected; stranger still passes.
	writeFile(t, policy, strings.Replace(allowBoth, "action: ALLOW", "action: ALLOW\n  bogusField: 1", 1))
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(m.Logs(), "bogusField") {
		if time.Now().After(deadline) {
			t.Fatalf("no log line names the rejected field\n%s", m.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if r := call(t, stranger.app, "backend.api/"); r.Status != 200 {
		t.Fatalf("after a malformed edit stranger got %d, want the last good policy (200)", r.Status)
	}
	// Restoring the original policy denies stranger again.
	writeFile(t, policy, string(orig))
	waitStatus(t, stranger.app, "backend.api/", 403, 2*time.Second)
}

// TestRotationUnderLoad runs steady traffic while 10-second certificates
// rotate several times: no request may fail.
func TestRotationUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("rotation test takes ~25s")
	}
	m := startMesh(t, "--cert-ttl", "10s")
	frontend := m.w("web/frontend")
	serialsSeen := map[string]bool{}
	deadline := time.Now().Add(22 * time.Second)
	n, failed := 0, 0
	for time.Now().Before(deadline) {
		r := call(t, frontend.app, "backend.api/")
		n++
		if r.Status != 200 {
			failed++
			t.Errorf("request %d: status %d body %q", n, r.Status, r.Body)
		}
		if n%20 == 0 {
			serialsSeen[certSerial(t, m.w("api/backend").admin)] = true
		}
		time.Sleep(10 * time.Millisecond)
	}
	if failed > 0 {
		t.Fatalf("%d of %d requests failed across rotations", failed, n)
	}
	if len(serialsSeen) < 3 {
		t.Fatalf("backend showed %d certificates in 22s with a 10s TTL, want at least 3 (rotations)", len(serialsSeen))
	}
	t.Logf("%d requests, 0 failed, %d backend certificates seen", n, len(serialsSeen))
}

// certSerial reads the serial of the proxy's current certificate from its
// admin /debug/certs page.
func certSerial(t *testing.T, admin string) string {
	t.Helper()
	resp, err := plain.Get("http://" + admin + "/debug/certs")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatal(err)
	}
	s, _ := v["serial"].(string)
	if s == "" {
		t.Fatalf("/debug/certs has no serial: %v", v)
	}
	return s
}

// TestInterruptStopsEverything checks that Ctrl-C stops every process that
// zmesh up started: no port it printed is still served.
func TestInterruptStopsEverything(t *testing.T) {
	m := startMesh(t)
	var addrs []string
	for _, w := range m.workloads {
		addrs = append(addrs, w.app, w.inbound, w.admin, w.outbound)
	}
	addrs = append(addrs, m.grpc)
	if err := m.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-m.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("zmesh up still running 20s after SIGINT\n%s", m.Logs())
	}
	for _, a := range addrs {
		if c, err := net.DialTimeout("tcp", a, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after zmesh up stopped", a)
		}
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// waitStatus polls until the app's call to target answers want, failing
// after within.
func waitStatus(t *testing.T, app, target string, want int, within time.Duration) {
	t.Helper()
	start := time.Now()
	for {
		r, err := tryCall(app, target)
		if err == nil && r.Status == want {
			t.Logf("%s answered %d after %s", target, want, time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Since(start) > within {
			t.Fatalf("%s still answers %d (%v) after %s, want %d", target, r.Status, err, within, want)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// TestUpRefusesMalformedConfig: a mesh directory the control plane could
// not load stops `zmesh up` at once with the file and the field, instead of
// a control plane restarting in a loop.
func TestUpRefusesMalformedConfig(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"workloads.yaml", "peer-authentication.yaml", "backend-authz.yaml"} {
		b, err := os.ReadFile(filepath.Join("../../examples/quickstart", f))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, f), string(b))
	}
	writeFile(t, filepath.Join(dir, "extra.yaml"), "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: x, namespace: api}\nspec: {actionn: DENY}\n")
	cmd := exec.Command(zmeshBin, "up", "-f", dir)
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		t.Fatal("zmesh up still running 15s after being given a malformed policy")
	}
	if err == nil {
		t.Fatalf("zmesh up exited 0 on a malformed policy:\n%s", out)
	}
	if !strings.Contains(string(out), "extra.yaml") || !strings.Contains(string(out), "actionn") {
		t.Fatalf("error does not name the file and the field:\n%s", out)
	}
}
