package localmesh

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/zmesh/zmesh/internal/fdstore"
)

// childEnv selects what the test binary does when a test runs it as a
// supervised child (see TestMain).
const childEnv = "LOCALMESH_TEST_CHILD"

func TestMain(m *testing.M) {
	if role := os.Getenv(childEnv); role != "" {
		child(role)
		return
	}
	os.Exit(m.Run())
}

// child plays a supervised process: "exit" says so and exits 1;
// "stubborn" ignores SIGTERM; "polite" exits 0 on SIGTERM, after a
// moment ("slow-polite"). Each prints a line when it starts and when it
// is asked to stop.
func child(role string) {
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	if role == "stubborn" {
		signal.Ignore(syscall.SIGTERM)
	}
	if role == "listener" || role == "listener-crash" {
		listenerChild(term, role == "listener-crash")
		return
	}
	fmt.Printf("%s started pid=%d\n", role, os.Getpid())
	if role == "exit" {
		os.Exit(1)
	}
	<-term // never, when stubborn: the supervisor's SIGKILL ends it
	fmt.Printf("%s stopping\n", role)
	if role == "slow-polite" {
		time.Sleep(200 * time.Millisecond) // an app finishing its work
	}
	fmt.Printf("%s stopped\n", role)
	os.Exit(0)
}

// listenerChild plays a proxy: it binds its listener through fdstore,
// prints its address, and answers every connection with its pid until
// SIGTERM.
func listenerChild(term <-chan os.Signal, crash bool) {
	lns, err := fdstore.Open(slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	ln, err := lns.Listen("inbound", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	lns.Close()
	fmt.Printf("listener started pid=%d addr=%s\n", os.Getpid(), ln.Addr())
	if crash {
		os.Exit(1)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "pid=%d\n", os.Getpid())
			c.Close()
		}
	}()
	<-term
	ln.Close()
	os.Exit(0)
}

// lines is a writer that tests read while children write to it.
type lines struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lines) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(b)
}

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// waitFor waits until l holds s, at most within.
func (l *lines) waitFor(t *testing.T, s string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !strings.Contains(l.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q within %s; output:\n%s", s, within, l)
		}
		time.Sleep(10 * time.Millisecond) // polling a child's output; no event to await
	}
}

func testProcess(t *testing.T, name, role string, out *lines) *process {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return &process{name: name, argv: []string{exe}, env: []string{childEnv + "=" + role},
		logs: out, log: slog.New(slog.NewTextHandler(out, nil))}
}

// superviseInBackground runs p.supervise until the returned stop is
// called; stop returns how long supervise took to return after it.
func superviseInBackground(t *testing.T, p *process, grace time.Duration) (stop func() time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.supervise(ctx, grace); close(done) }()
	stop = func() time.Duration {
		t0 := time.Now()
		cancel()
		select {
		case <-done:
		case <-time.After(grace + 10*time.Second):
			t.Fatalf("supervise did not return %s after its context ended (grace %s)", grace+10*time.Second, grace)
		}
		return time.Since(t0)
	}
	t.Cleanup(func() { stop() })
	return stop
}

func TestSuperviseRestartsAChildThatExits(t *testing.T) {
	out := &lines{}
	p := testProcess(t, "web/a app", "exit", out)
	stop := superviseInBackground(t, p, time.Second)
	// Restarts come after 200 ms, then 400 ms: three starts within a second
	// or so, each line prefixed with the process's name.
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(out.String(), "[web/a app] exit started") < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("the child was not restarted twice within 10s; output:\n%s", out)
		}
		time.Sleep(10 * time.Millisecond) // polling a child's output; no event to await
	}
	stop()
	if !strings.Contains(out.String(), "process exited; restarting") {
		t.Errorf("no restart logged; output:\n%s", out)
	}
}

func TestSuperviseStopsAPoliteChildWithSIGTERM(t *testing.T) {
	out := &lines{}
	p := testProcess(t, "web/a proxy", "polite", out)
	stop := superviseInBackground(t, p, 30*time.Second)
	out.waitFor(t, "[web/a proxy] polite started", 10*time.Second)
	if took := stop(); took > 10*time.Second {
		t.Errorf("supervise took %s to stop a child that exits on SIGTERM", took)
	}
	if !strings.Contains(out.String(), "[web/a proxy] polite stopped") {
		t.Errorf("the child did not get SIGTERM; output:\n%s", out)
	}
	if strings.Count(out.String(), "polite started") != 1 {
		t.Errorf("a child stopped by the supervisor was restarted; output:\n%s", out)
	}
}

func TestSuperviseKillsAChildThatIgnoresSIGTERM(t *testing.T) {
	out := &lines{}
	p := testProcess(t, "web/a app", "stubborn", out)
	const grace = 300 * time.Millisecond
	stop := superviseInBackground(t, p, grace)
	out.waitFor(t, "stubborn started", 10*time.Second)
	p.mu.Lock()
	pid := p.cmd.Process.Pid
	p.mu.Unlock()
	if took := stop(); took < grace {
		t.Errorf("supervise returned after %s, before the %s grace: the child cannot have been killed for ignoring SIGTERM", took, grace)
	}
	// Reaped by supervise: the pid is gone.
	if err := syscall.Kill(pid, 0); err != syscall.ESRCH {
		t.Errorf("child %d still exists after supervise returned (kill 0: %v)", pid, err)
	}
}

// TestWorkloadOrder: the app starts only once its proxy's /ready answers
// 200, and the proxy is asked to stop only once the app has exited.
func TestWorkloadOrder(t *testing.T) {
	out := &lines{}
	var ready atomic.Bool
	admin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ready" || !ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(out, "ready answered 200")
	}))
	defer admin.Close()
	w := workloadProcs{
		proxy: testProcess(t, "web/a proxy", "polite", out),
		app:   testProcess(t, "web/a app", "slow-polite", out),
		admin: strings.TrimPrefix(admin.URL, "http://"),
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	out.waitFor(t, "[web/a proxy] polite started", 10*time.Second)
	ready.Store(true)
	out.waitFor(t, "[web/a app] slow-polite started", 10*time.Second)
	cancel()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the workload's processes did not stop within 20s")
	}
	order := []string{"[web/a proxy] polite started", "ready answered 200", "slow-polite started", "slow-polite stopped", "[web/a proxy] polite stopping"}
	s, at := out.String(), 0
	for _, want := range order {
		i := strings.Index(s[at:], want)
		if i < 0 {
			t.Fatalf("want, in this order, %q; output:\n%s", order, s)
		}
		at += i + len(want)
	}
}

func TestPrefixWriter(t *testing.T) {
	var buf bytes.Buffer
	a, b := newPrefixWriter(&buf, "[a] "), newPrefixWriter(&buf, "[b] ")
	a.Write([]byte("one "))
	b.Write([]byte("two\nthr"))
	a.Write([]byte("line\nnext\n"))
	b.Write([]byte("ee"))
	b.Flush()
	a.Flush() // nothing pending
	if want := "[b] two\n[a] one line\n[a] next\n[b] three\n"; buf.String() != want {
		t.Errorf("interleaved output %q, want whole lines %q", buf.String(), want)
	}

	// A child that never ends its line is cut every 64 KiB, not buffered
	// without bound.
	buf.Reset()
	c := newPrefixWriter(&buf, "[c] ")
	c.Write(bytes.Repeat([]byte("x"), 64<<10+1))
	if got := buf.Len(); got != len("[c] ")+64<<10+1+1 {
		t.Errorf("wrote %d bytes of a 64 KiB+1 unterminated line, want it emitted whole with a newline", got)
	}
	if len(c.buf) != 0 {
		t.Errorf("%d bytes still buffered", len(c.buf))
	}
}

func TestFreePorts(t *testing.T) {
	ports, err := freePorts(20)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, p := range ports {
		if !strings.HasPrefix(p, "127.0.0.1:") || seen[p] {
			t.Fatalf("ports %v: want 20 distinct loopback ports", ports)
		}
		seen[p] = true
	}
}

// TestWaitReady: a proxy counts as ready only when it is ready, its app
// accepts connections, and it knows an endpoint of every service of the
// mesh; one that never gets there is named in the error.
func TestWaitReady(t *testing.T) {
	admin := func(ready, appOK bool, config string) string {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch {
			case r.URL.Path == "/ready" && ready, r.URL.Path == appReadyz && appOK:
			case r.URL.Path == "/debug/config":
				fmt.Fprint(w, config)
			default:
				http.Error(w, "no", http.StatusServiceUnavailable)
			}
		}))
		t.Cleanup(s.Close)
		return strings.TrimPrefix(s.URL, "http://")
	}
	const both = `{"services":[{"hostname":"backend.api.svc.cluster.local","endpoints":[{}]},{"hostname":"frontend.web.svc.cluster.local","endpoints":[{}]}]}`
	const noBackendEndpoint = `{"services":[{"hostname":"backend.api.svc.cluster.local","endpoints":[]},{"hostname":"frontend.web.svc.cluster.local","endpoints":[{}]}]}`
	mem := func(ns, name, admin string) member {
		return member{Workload: Workload{Name: name, Namespace: ns, Services: []string{name}}, admin: admin}
	}
	for _, tc := range []struct {
		name    string
		backend string // the backend proxy's admin address
		want    string // "" for ready; else the error names it
	}{
		{"all ready", admin(true, true, both), ""},
		{"proxy not ready", admin(false, true, both), "api/backend"},
		{"app not accepting", admin(true, false, both), "api/backend"},
		{"a service without endpoints", admin(true, true, noBackendEndpoint), "api/backend"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			members := []member{mem("web", "frontend", admin(true, true, both)), mem("api", "backend", tc.backend)}
			err := waitReady(context.Background(), members, 300*time.Millisecond)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("waitReady = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "web/frontend")):
				t.Fatalf("waitReady = %v, want an error naming %s alone", err, tc.want)
			}
		})
	}
}

// A supervised process with a store gets its listener back when it is
// restarted: a connection made while it is down waits and is answered by
// the next process; once the supervisor stops, the listener is closed.
func TestSuperviseKeepsListenersAcrossRestarts(t *testing.T) {
	out := &lines{}
	p := testProcess(t, "web/a proxy", "listener", out)
	p.store = fdstore.NewStore(p.log)
	stop := superviseInBackground(t, p, 5*time.Second)
	out.waitFor(t, "listener started", 10*time.Second)
	addr := between(out.String(), "addr=", "\n")
	p.mu.Lock()
	first := p.cmd.Process
	p.mu.Unlock()
	first.Kill()

	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("connect while the child is down: %v (the listener was not kept)", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("the waiting connection got no answer: %v; output:\n%s", err, out)
	}
	if line == fmt.Sprintf("pid=%d\n", first.Pid) || !strings.HasPrefix(line, "pid=") {
		t.Fatalf("answered %q, want the next process's pid (the first was %d)", line, first.Pid)
	}
	// The child's output reaches out through a pipe, maybe after its
	// answer did.
	starts := func() int {
		n := 0
		for _, l := range strings.Split(out.String(), "\n") {
			if strings.Contains(l, "listener started") && strings.HasSuffix(l, "addr="+addr) {
				n++
			}
		}
		return n
	}
	for deadline := time.Now().Add(10 * time.Second); starts() < 2; {
		if time.Now().After(deadline) {
			t.Fatalf("%d starts on %s, want 2; output:\n%s", starts(), addr, out)
		}
		time.Sleep(10 * time.Millisecond) // polling a child's output; no event to await
	}

	stop()
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatal("the listener is still open after the supervisor stopped")
	}
}

// between returns the text of s after the first from, up to to.
func between(s, from, to string) string {
	_, rest, _ := strings.Cut(s, from)
	v, _, _ := strings.Cut(rest, to)
	return v
}

// A process that keeps failing loses its kept listeners: callers are
// refused (and go elsewhere) rather than wait for it.
func TestSuperviseReleasesTheListenersOfACrashLoop(t *testing.T) {
	out := &lines{}
	p := testProcess(t, "web/a proxy", "listener-crash", out)
	p.store = fdstore.NewStore(p.log)
	superviseInBackground(t, p, time.Second)
	out.waitFor(t, "listener started", 10*time.Second)
	addr := between(out.String(), "addr=", "\n")
	out.waitFor(t, "its listeners are released", 20*time.Second)
	// The next start is a second or more away.
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatalf("connect to a crash-looping process's port succeeded: the listener is still kept\n%s", out)
	}
	if n := strings.Count(out.String(), "listener started"); n < 4 {
		t.Errorf("released after %d starts, want the fourth quick exit", n)
	}
}
