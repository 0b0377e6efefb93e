package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// capturedMesh starts `zmesh up --capture` on the quickstart, with a
// prefix and subnet of its own so that it cannot meet another test's pod
// network, and returns the mesh and the prefix.
func capturedMesh(t *testing.T) (*mesh, string) {
	t.Helper()
	args, prefix := captureArgs(t)
	return startMesh(t, args...), prefix
}

// capturedMeshWith is capturedMesh with files added to the mesh
// directory, as startMeshWith.
func capturedMeshWith(t *testing.T, files map[string]string) (*mesh, string) {
	t.Helper()
	args, prefix := captureArgs(t)
	return startMeshWith(t, files, args...), prefix
}

// captureArgs skips t where `zmesh up --capture` cannot run, and returns
// the flags for a captured mesh with a prefix and subnet of its own, and
// the prefix.
func captureArgs(t *testing.T) ([]string, string) {
	t.Helper()
	if testing.Short() {
		t.Skip("captured mesh test takes ~10s")
	}
	if os.Geteuid() != 0 {
		t.Skip("zmesh up --capture needs root (network namespaces, nftables); CI runs this test as root")
	}
	for _, tool := range []string{"ip", "setpriv"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("zmesh up --capture needs %s", tool)
		}
	}
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	prefix := "zme" + hex.EncodeToString(b[:3])
	subnet := fmt.Sprintf("10.%d.%d.0/24", 128+int(b[3])%64, int(b[0]))
	return []string{"--capture", "--capture-prefix", prefix, "--capture-subnet", subnet}, prefix
}

// podGet sends GET path with Host host to addr from inside the network
// namespace ns, as an app there would: no proxy, plain TCP.
func podGet(ns, addr, host, path string) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := dialInNetns(ctx, ns, "tcp", addr)
	if err != nil {
		return 0, nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	req, _ := http.NewRequest(http.MethodGet, "http://"+host+path, nil)
	req.Close = true
	if err := req.Write(c); err != nil {
		return 0, nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var body strings.Builder
	_, err = bufio.NewReader(resp.Body).WriteTo(&body)
	return resp.StatusCode, []byte(body.String()), err
}

// xfccURI returns the client identity the backend's proxy put in
// X-Forwarded-Client-Cert, from an echo reply.
func xfccURI(t *testing.T, body []byte) string {
	t.Helper()
	var r echoReply
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("echo reply %q: %v", body, err)
	}
	for _, v := range r.Headers["X-Forwarded-Client-Cert"] {
		for _, part := range strings.Split(v, ";") {
			if u, ok := strings.CutPrefix(part, "URI="); ok {
				return u
			}
		}
	}
	return ""
}

// TestCaptureQuickstart runs the quickstart captured: the apps have no
// proxy setting, yet frontend's plain HTTP to backend crosses the mesh
// (backend sees frontend's SPIFFE ID), stranger is denied, the host's
// plaintext to backend's app address meets STRICT mTLS, a loopback-looking
// address is no way around the proxy, and no request byte leaves
// frontend's pod in clear.
func TestCaptureQuickstart(t *testing.T) {
	m, prefix := capturedMesh(t)
	frontendNS, strangerNS := prefix+"-web-frontend", prefix+"-web-stranger"
	backend := m.w("api/backend")
	const host = "backend.api.svc.cluster.local"

	t.Run("frontend reaches backend with no proxy setting and its own identity", func(t *testing.T) {
		status, body, err := podGet(frontendNS, backend.app, host, "/hello")
		if err != nil || status != 200 {
			t.Fatalf("GET from frontend's netns: %d %v %s\n%s", status, err, body, m.Logs())
		}
		if got := xfccURI(t, body); got != "spiffe://cluster.local/ns/web/sa/frontend" {
			t.Fatalf("backend saw client %q, want frontend's SPIFFE ID; reply %s", got, body)
		}
	})
	t.Run("stranger is denied by the backend's policy", func(t *testing.T) {
		status, body, err := podGet(strangerNS, backend.app, host, "/")
		if err != nil || status != 403 {
			t.Fatalf("GET from stranger's netns: %d %v %s", status, err, body)
		}
	})
	t.Run("a loopback-looking address does not bypass the proxy", func(t *testing.T) {
		// Nothing listens on 127.0.0.9 in frontend's pod (its app is on
		// 127.0.0.1 only): only the outbound proxy can answer, through
		// the mesh, with frontend's identity.
		status, body, err := podGet(frontendNS, "127.0.0.9:8080", host, "/")
		if err != nil || status != 200 {
			t.Fatalf("GET 127.0.0.9:8080 from frontend's netns: %d %v %s", status, err, body)
		}
		if got := xfccURI(t, body); got != "spiffe://cluster.local/ns/web/sa/frontend" {
			t.Fatalf("backend saw client %q via a loopback address", got)
		}
	})
	t.Run("only the host reaches a proxy's admin listener", func(t *testing.T) {
		resp, err := plain.Get("http://" + backend.admin + "/debug/config")
		if err != nil {
			t.Fatalf("the host's GET of backend's admin: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("the host's GET of backend's admin: %d", resp.StatusCode)
		}
		// Another workload, through its own proxy (passthrough), must
		// not read backend's config or stop it with /quitquitquit.
		status, body, err := podGet(strangerNS, backend.admin, backend.admin, "/debug/config")
		if err == nil && (status == 200 || strings.Contains(string(body), "policies")) {
			t.Fatalf("stranger read backend's admin: %d %s", status, body)
		}
	})
	t.Run("the host's plaintext to backend's app address meets STRICT mTLS", func(t *testing.T) {
		resp, err := plain.Get("http://" + backend.app + "/")
		if err == nil {
			resp.Body.Close()
			t.Fatalf("plaintext GET from the host to %s answered %d; want the connection refused", backend.app, resp.StatusCode)
		}
	})
	t.Run("no request byte leaves frontend's pod in clear", func(t *testing.T) {
		_, portStr, _ := net.SplitHostPort(backend.app)
		port, _ := strconv.Atoi(portStr)
		// The host end of frontend's veth pair (the first workload's):
		// what frontend's pod sends arrives there. The bridge device itself
		// does not see frames forwarded between its ports.
		c, err := newLinkCapture(prefix+"v0", uint16(port))
		if err != nil {
			t.Fatalf("capture on frontend's veth: %v", err)
		}
		const marker = "zmesh-plaintext-marker-c4p7"
		status, _, err := podGet(frontendNS, backend.app, host, "/"+marker)
		flows := c.stop()
		if err != nil || status != 200 {
			t.Fatalf("GET: %d %v", status, err)
		}
		if len(flows) == 0 {
			t.Fatal("captured nothing from frontend's pod to the backend's port")
		}
		for src, payload := range flows {
			if len(payload) < 5 || payload[0] < 0x14 || payload[0] > 0x17 || payload[1] != 0x03 {
				t.Errorf("connection from port %d starts with % x, not a TLS record", src, payload[:min(len(payload), 8)])
			}
			if strings.Contains(string(payload), marker) {
				t.Errorf("connection from port %d carried the request path in clear", src)
			}
		}
	})
	t.Run("mesh names resolve inside the pod", func(t *testing.T) {
		// frontend's app is `zmesh echo`: its /call resolves the name with
		// the pod's resolv.conf and calls with no proxy setting. Its own
		// port, on 127.0.0.1, is not captured.
		for _, name := range []string{host, "backend.api"} {
			status, body, err := podGet(frontendNS, "127.0.0.1:8080", "localhost", "/call/"+name+"/")
			if err != nil {
				t.Fatalf("GET /call/%s from frontend's netns: %v", name, err)
			}
			var r callResult
			if err := json.Unmarshal(body, &r); err != nil || status != 200 || r.Status != 200 {
				t.Fatalf("/call/%s: %d %s", name, status, body)
			}
		}
	})
}

// TestCaptureLeavesNothingBehind stops a captured mesh with an interrupt
// and checks that no namespace, link, /etc/netns folder or state file
// stays; then it kills one with SIGKILL, which leaves them, and checks
// that the next start removes them (and the processes still in them).
func TestCaptureLeavesNothingBehind(t *testing.T) {
	m, prefix := capturedMesh(t)
	args := m.args
	names := []string{prefix + "-web-frontend", prefix + "-web-stranger", prefix + "-api-backend"}
	leftovers := func() []string {
		var out []string
		for _, n := range names {
			for _, p := range []string{"/run/netns/" + n, "/etc/netns/" + n} {
				if _, err := os.Stat(p); err == nil {
					out = append(out, p)
				}
			}
		}
		if _, err := net.InterfaceByName(prefix + "0"); err == nil {
			out = append(out, "link "+prefix+"0")
		}
		if _, err := os.Stat(filepath.Join("/run/zmesh", prefix+".json")); err == nil {
			out = append(out, "state file")
		}
		return out
	}
	m.stop()
	if l := leftovers(); len(l) > 0 {
		t.Fatalf("after an interrupt, left behind: %v", l)
	}

	m = startMesh(t, args...)
	proxyPID := childPID(t, "proxy", "--name", "backend", "--capture")
	if err := m.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-m.done
	if len(leftovers()) == 0 {
		t.Fatal("a killed zmesh up left nothing: this test no longer tests the cleanup on start")
	}
	m = startMesh(t, args...)
	if processRuns(proxyPID) {
		t.Errorf("the killed run's backend proxy (pid %d) still runs after the next start", proxyPID)
	}
	status, body, err := podGet(prefix+"-web-frontend", m.w("api/backend").app, "backend.api.svc.cluster.local", "/")
	if err != nil || status != 200 {
		t.Fatalf("after restart: %d %v %s", status, err, body)
	}
	m.stop()
	if l := leftovers(); len(l) > 0 {
		t.Fatalf("after a restart and an interrupt, left behind: %v", l)
	}
}

// processRuns reports whether pid is a live process. A killed process
// whose parent died is a zombie until init reaps it, and init in a
// container may never do so: a zombie does not run.
func processRuns(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) STATE ...; comm may hold spaces and parentheses.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	state := b[i+2]
	return state != 'Z' && state != 'X'
}
