package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// helperEnv, set in zmesh up's environment, makes this test binary, when
// a mesh starts it as a workload's app (ZMESH_WORKLOAD set), run
// helperApp instead of the tests.
const helperEnv = "ZMESH_E2E_HELPER_APP"

// runHelperApp runs helperApp and reports true if this process was
// started as one.
func runHelperApp() bool {
	if os.Getenv(helperEnv) == "" || os.Getenv("ZMESH_WORKLOAD") == "" {
		return false
	}
	if err := helperApp(); err != nil {
		fmt.Println("helper: error:", err)
		os.Exit(1)
	}
	return true
}

// helperApp is an app that reports, as soon as it starts, what it finds
// of its proxy: whether the proxy's /ready says it holds a certificate and
// config, and, when it has a proxy setting, the outcome of one call to
// its own service through the mesh (no retry: it must work the first
// time). It serves / (the caller's X-Forwarded-Client-Cert) and
// /slow?d=DURATION (answers after DURATION), and stops on SIGTERM.
func helperApp() error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", os.Getenv("PORT")))
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{"xfcc": r.Header.Get("X-Forwarded-Client-Cert")})
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		d, _ := time.ParseDuration(r.URL.Query().Get("d"))
		fmt.Println("helper: slow request arrived")
		select {
		case <-time.After(d):
			io.WriteString(w, "slow done\n")
		case <-r.Context().Done():
		}
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)

	noProxy := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}
	code := -1
	if resp, err := noProxy.Get("http://" + os.Getenv("ZMESH_PROXY_ADMIN") + "/ready"); err == nil {
		code = resp.StatusCode
		resp.Body.Close()
	}
	fmt.Printf("helper: proxy ready at start: %d\n", code)
	if os.Getenv("HTTP_PROXY") != "" {
		ns, name, _ := strings.Cut(os.Getenv("ZMESH_WORKLOAD"), "/")
		viaProxy := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: http.ProxyFromEnvironment}}
		status, uri := -1, ""
		resp, err := viaProxy.Get("http://" + name + "." + ns + ".svc.cluster.local/")
		if err == nil {
			var body struct{ XFCC string }
			json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&body)
			resp.Body.Close()
			status = resp.StatusCode
			for _, part := range strings.Split(body.XFCC, ";") {
				if u, ok := strings.CutPrefix(part, "URI="); ok {
					uri = u
				}
			}
		} else {
			fmt.Println("helper: first call failed:", err)
		}
		fmt.Printf("helper: first call through the proxy: %d %s\n", status, uri)
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

// starterFiles is a mesh file adding workload web/starter, whose app is
// helperApp, to the quickstart.
func starterFiles(t *testing.T) map[string]string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	self, err = filepath.Abs(self)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(helperEnv, "1")
	return map[string]string{"starter.yaml": `apiVersion: zmesh.dev/v1alpha1
kind: Workload
metadata: {name: starter, namespace: web}
spec:
  serviceAccount: starter
  labels: {app: starter}
  services: [starter]
  command: [` + self + `]
`}
}

// helperReport waits for helperApp's line starting with prefix and
// returns the rest of it.
func helperReport(t *testing.T, m *mesh, prefix string) string {
	t.Helper()
	var rest string
	waitFor(t, "helper line "+prefix, 30*time.Second, m.Logs, func() bool {
		for _, l := range strings.Split(m.Logs(), "\n") {
			if _, after, ok := strings.Cut(l, prefix); ok {
				rest = strings.TrimSpace(after)
				return true
			}
		}
		return false
	})
	return rest
}

// TestAppStartsOnlyOnceItsProxyIsReady: the app's very first look at its
// proxy finds it ready, and its very first call through the mesh (to its
// own service, so that the answer depends on nothing else starting)
// works and carries its SPIFFE ID.
func TestAppStartsOnlyOnceItsProxyIsReady(t *testing.T) {
	m := startMeshWith(t, starterFiles(t))
	if got := helperReport(t, m, "helper: proxy ready at start:"); got != "200" {
		t.Errorf("the app found its proxy's /ready at %s when it started, want 200\n%s", got, m.Logs())
	}
	want := "200 spiffe://cluster.local/ns/web/sa/starter"
	if got := helperReport(t, m, "helper: first call through the proxy:"); got != want {
		t.Errorf("the app's first call through the mesh: %q, want %q\n%s", got, want, m.Logs())
	}
}

// TestProxyDrainsThroughRealProcesses sends SIGTERM to a running proxy
// with a request in flight (it completes, while new connections are
// refused), then with a request stuck (the proxy exits within its drain
// bound anyway), then stops one with POST /quitquitquit.
func TestProxyDrainsThroughRealProcesses(t *testing.T) {
	m := startMeshWith(t, starterFiles(t))
	frontend, starter := m.w("web/frontend"), m.w("web/starter")
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(mustParseURL(t, "http://"+frontend.outbound))}}
	slow := func(d string) <-chan string {
		ch := make(chan string, 1)
		go func() {
			c := client
			if d == "120s" {
				// Cut at the drain bound, the stuck GET is sent again
				// (an idempotent request on a reused connection that got
				// no answer, by http.Transport's rules), to the next
				// process, where it is stuck again: no need to wait 30 s.
				c = &http.Client{Timeout: 12 * time.Second, Transport: client.Transport}
			}
			resp, err := c.Get("http://starter.web.svc.cluster.local/slow?d=" + d)
			if err != nil {
				ch <- "error: " + err.Error()
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			ch <- fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(b)))
		}()
		return ch
	}
	arrivals := func() int { return strings.Count(m.Logs(), "helper: slow request arrived") }
	proxyPID := func() int {
		var pid int
		waitFor(t, "starter's proxy ready", 30*time.Second, m.Logs, func() bool {
			pid = childPIDOrZero(zmeshBin, "proxy", "--name starter")
			return pid != 0 && httpStatus(plain, "http://"+starter.admin+"/ready") == 200
		})
		// A drain longer than the control plane's grace for a lost
		// stream takes the endpoint out of the callers' views until the
		// new process registers: wait until the frontend has it again.
		waitFor(t, "the frontend routing to starter", 30*time.Second, m.Logs, func() bool {
			return httpStatus(client, "http://starter.web.svc.cluster.local/") == 200
		})
		return pid
	}

	// zmesh up keeps the proxy's listeners across its restarts
	// (fdstore): the draining process stops accepting, and what arrives
	// meanwhile waits for the next one instead of being refused.
	t.Run("SIGTERM: the request in flight completes, new ones wait for the next process", func(t *testing.T) {
		pid := proxyPID()
		res := slow("3s")
		waitFor(t, "the slow request at the app", 10*time.Second, m.Logs, func() bool { return arrivals() == 1 })
		if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the drain to begin", 5*time.Second, m.Logs, func() bool { return strings.Contains(m.Logs(), "draining: readiness false") })
		if refusedTCP(starter.inbound) {
			t.Fatalf("starter's inbound refuses connections while its proxy restarts\n%s", m.Logs())
		}
		during := slow("0s")
		if got := <-res; got != "200 slow done" {
			t.Fatalf("request in flight across SIGTERM: %s\n%s", got, m.Logs())
		}
		if got := <-during; got != "200 slow done" {
			t.Fatalf("request sent during the drain: %s\n%s", got, m.Logs())
		}
		waitExit(t, m, pid, 5*time.Second)
		if !strings.Contains(m.Logs(), "msg=drained") {
			t.Errorf("no drained log line\n%s", m.Logs())
		}
	})
	t.Run("SIGTERM: a stuck request does not hold the proxy past its drain bound", func(t *testing.T) {
		pid := proxyPID()
		before := arrivals()
		res := slow("120s")
		waitFor(t, "the stuck request at the app", 10*time.Second, m.Logs, func() bool { return arrivals() > before })
		start := time.Now()
		if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		waitExit(t, m, pid, 9*time.Second) // the default 5s drain, with room for a loaded machine
		if d := time.Since(start); d < 4*time.Second {
			t.Errorf("proxy exited %s after SIGTERM with a request in flight: it did not wait for the drain", d)
		}
		if got := <-res; got == "200 slow done" {
			t.Errorf("stuck request answered %q", got)
		}
	})
	t.Run("POST /quitquitquit stops the proxy the same way", func(t *testing.T) {
		pid := proxyPID()
		resp, err := plain.Post("http://"+starter.admin+"/quitquitquit", "text/plain", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("POST /quitquitquit = %d", resp.StatusCode)
		}
		waitExit(t, m, pid, 5*time.Second)
		if !strings.Contains(m.Logs(), "stopping: quitquitquit") {
			t.Errorf("no quitquitquit log line\n%s", m.Logs())
		}
		proxyPID() // zmesh up starts it again
	})
}

// refusedTCP reports whether a new connection to addr is refused.
func refusedTCP(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		c.Close()
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

// waitExit waits until process pid is gone (reaped by zmesh up).
func waitExit(t *testing.T, m *mesh, pid int, within time.Duration) {
	t.Helper()
	waitFor(t, fmt.Sprintf("process %d exited", pid), within, m.Logs, func() bool {
		return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
	})
}

// TestCaptureLifecycle: under capture too, the app starts only once its
// proxy is ready; every proxy runs without root and without any
// capability once its rules are in place, and cannot regain them
// (no_new_privs); /quitquitquit is refused from outside the pod.
func TestCaptureLifecycle(t *testing.T) {
	m, _ := capturedMeshWith(t, starterFiles(t))
	if got := helperReport(t, m, "helper: proxy ready at start:"); got != "200" {
		t.Errorf("the captured app found its proxy's /ready at %s when it started, want 200\n%s", got, m.Logs())
	}
	for _, name := range []string{"frontend", "stranger", "backend", "starter"} {
		pid := childPID(t, zmeshBin, "proxy", "--capture", "--name "+name)
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			t.Fatal(err)
		}
		fields := map[string]string{}
		for _, l := range strings.Split(string(status), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok {
				fields[k] = strings.Join(strings.Fields(v), " ")
			}
		}
		for _, k := range []string{"Uid", "Gid"} {
			for _, id := range strings.Fields(fields[k]) {
				if id == "0" {
					t.Errorf("%s's proxy: %s %s, want no root ID (real, effective, saved, filesystem)", name, k, fields[k])
				}
			}
		}
		if g := fields["Groups"]; g != "" {
			t.Errorf("%s's proxy keeps supplementary groups %q", name, g)
		}
		for _, k := range []string{"CapInh", "CapPrm", "CapEff", "CapAmb"} {
			if v := fields[k]; strings.Trim(v, "0") != "" {
				t.Errorf("%s's proxy: %s %s, want no capability", name, k, v)
			}
		}
		if fields["NoNewPrivs"] != "1" {
			t.Errorf("%s's proxy: NoNewPrivs %q, want 1: a setuid binary would give it root back", name, fields["NoNewPrivs"])
		}
	}
	// The host reaches the pod's admin port from outside the pod.
	resp, err := plain.Post("http://"+m.w("web/starter").admin+"/quitquitquit", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("/quitquitquit from outside the pod = %d, want 403", resp.StatusCode)
	}

	// A captured proxy's listeners, bound in its pod's network namespace
	// by a process without root, are kept across its crash too: the next
	// one inherits them from zmesh up.
	pid := childPID(t, zmeshBin, "proxy", "--capture", "--name starter")
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitExit(t, m, pid, 5*time.Second)
	waitFor(t, "the restarted captured proxy to inherit its inbound listener", 30*time.Second, m.Logs, func() bool {
		return strings.Contains(m.Logs(), "[web/starter proxy] ") && strings.Contains(m.Logs(), "listener inherited from the previous process\" listener=inbound")
	})
}

func mustParseURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
