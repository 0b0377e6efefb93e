package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestVMJoinsFromAnotherNetns plays a workload on a machine outside the
// mesh's host: the control plane runs in one network namespace, the
// workload's app and `zmesh proxy` in another, joined by a veth pair. The
// operator gives the proxy a bootstrap token from `zmesh token create`;
// with it the proxy gets a certificate for exactly the token's identity,
// then renews with that certificate (the token file is gone by then), and
// the control plane lists it in sync. A token whose claims were edited to
// name another identity gets nothing, and the control plane logs why.
func TestVMJoinsFromAnotherNetns(t *testing.T) {
	if testing.Short() {
		t.Skip("VM join test takes ~10s")
	}
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root; CI runs this test as root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("network namespaces need the ip command (iproute2)")
	}
	hosts := newHostPair(t)
	cpAddr, vmAddr := hosts.cpIP, hosts.vmIP

	config, dataDir := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(config, "peer-authentication.yaml"), `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec:
  mtls: {mode: STRICT}
`)
	cp := startInNetns(t, hosts.cpNS, "controlplane", nil, zmeshBin, "controlplane",
		"--listen", cpAddr+":15012", "--admin", cpAddr+":15014",
		"--config-dir", config, "--data-dir", dataDir)
	// The control plane writes the bundle and the token key on its first start.
	waitFor(t, "the control plane's CA files", 15*time.Second, cp.Logs, func() bool {
		_, err1 := os.Stat(filepath.Join(dataDir, "root-cert.pem"))
		_, err2 := os.Stat(filepath.Join(dataDir, "token-key"))
		return err1 == nil && err2 == nil
	})
	cpClient := netnsClient(hosts.cpNS)
	waitFor(t, "the control plane's /ready", 15*time.Second, cp.Logs, func() bool {
		return httpStatus(cpClient, "http://"+cpAddr+":15014/ready") == 200
	})

	token, tokenFile := createToken(t, dataDir, "vm", "legacy")
	// The intruder holds the same token with its claims edited to ask for
	// another service account; the signature is left as it was.
	badFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(badFile, []byte(tamperToken(t, token, `"sa":"legacy"`, `"sa":"admin"`)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	// proxyArgs runs a proxy for ns/name (service account sa) on host ip,
	// its ports shifted by port, for the app on 127.0.0.1:18080.
	proxyArgs := func(ip, ns, name, sa, tokenFile string, port int) []string {
		return []string{zmeshBin, "proxy",
			"--controlplane", cpAddr + ":15012", "--root-cert", filepath.Join(dataDir, "root-cert.pem"),
			"--token-file", tokenFile, "--name", name, "--namespace", ns, "--service-account", sa,
			"--labels", "app=" + name, "--services", name, "--cert-ttl", "4s",
			"--app", "127.0.0.1:18080",
			"--inbound", fmt.Sprintf("%s:%d", ip, 15006+port),
			"--admin", fmt.Sprintf("%s:%d", ip, 15020+port),
			"--outbound", fmt.Sprintf("127.0.0.1:%d", 15001+port)}
	}
	startInNetns(t, hosts.vmNS, "echo legacy", nil, zmeshBin, "echo", "--listen", "127.0.0.1:18080", "--name", "legacy")
	vm := startInNetns(t, hosts.vmNS, "proxy legacy", nil, proxyArgs(vmAddr, "vm", "legacy", "legacy", tokenFile, 0)...)
	intruder := startInNetns(t, hosts.vmNS, "proxy intruder", nil, proxyArgs(vmAddr, "vm", "intruder", "admin", badFile, 100)...)
	// A workload on the control plane's host, to call the VM across the link.
	_, callerToken := createToken(t, dataDir, "web", "caller")
	startInNetns(t, hosts.cpNS, "echo caller", []string{"HTTP_PROXY=http://127.0.0.1:15001"},
		zmeshBin, "echo", "--listen", "127.0.0.1:18080", "--name", "caller")
	caller := startInNetns(t, hosts.cpNS, "proxy caller", nil, proxyArgs(cpAddr, "web", "caller", "caller", callerToken, 0)...)
	vmClient := netnsClient(hosts.vmNS)
	admin, intruderAdmin := vmAddr+":15020", vmAddr+":15120"
	allLogs := func() string { return cp.Logs() + vm.Logs() + intruder.Logs() + caller.Logs() }

	waitFor(t, "the VM proxy's /ready", 20*time.Second, allLogs, func() bool {
		return httpStatus(vmClient, "http://"+admin+"/ready") == 200
	})
	first, err := fetchProxyCerts(vmClient, admin)
	if err != nil {
		t.Fatal(err)
	}
	// From here on the proxy has no token: renewals must use the certificate.
	if err := os.Remove(tokenFile); err != nil {
		t.Fatal(err)
	}
	const want = "spiffe://cluster.local/ns/vm/sa/legacy"
	if first.SPIFFEID != want {
		t.Errorf("/debug/certs spiffeId %q, want %q", first.SPIFFEID, want)
	}
	chain, err := parsePEMCerts(first.ChainPEM)
	if err != nil || len(chain) == 0 {
		t.Fatalf("VM proxy's chain: %v (%d certificates)", err, len(chain))
	}
	if len(chain[0].URIs) != 1 || chain[0].URIs[0].String() != want {
		t.Errorf("VM proxy's certificate names %v, want only %s", chain[0].URIs, want)
	}
	if err := first.wantChainsTo(readSingleRoot(t, filepath.Join(dataDir, "root-cert.pem"))); err != nil {
		t.Error(err)
	}
	if life := chain[0].NotAfter.Sub(chain[0].NotBefore); life > 10*time.Second {
		t.Errorf("certificate lives %s, want the 4s the proxy asked for (give or take back-dating)", life)
	}

	// Two renewals after the token is gone, each with the certificate.
	var last proxyCerts
	waitFor(t, "two renewals with the certificate", 15*time.Second, allLogs, func() bool {
		last, err = fetchProxyCerts(vmClient, admin)
		return err == nil && last.Rotations >= first.Rotations+2
	})
	if last.Serial == first.Serial || !last.Ready || last.SPIFFEID != want {
		t.Errorf("after renewals: serial %s (first %s), ready %v, id %s", last.Serial, first.Serial, last.Ready, last.SPIFFEID)
	}
	if n := strings.Count(vm.Logs(), "auth=certificate"); n < 2 {
		t.Errorf("the VM proxy logged %d renewals authenticated with its certificate, want at least 2:\n%s", n, vm.Logs())
	}
	if strings.Contains(vm.Logs(), "read bootstrap token") {
		t.Errorf("the VM proxy fell back to its (deleted) token:\n%s", vm.Logs())
	}
	issued := 0
	for _, line := range strings.Split(cp.Logs(), "\n") {
		if strings.Contains(line, "certificate issued") && strings.Contains(line, "identity="+want+" ") {
			issued++
		}
	}
	if n := issued; n < 3 {
		t.Errorf("the control plane logged %d issuances for %s, want at least 3 (first and two renewals)", n, want)
	}

	// The control plane, asked from its own host, lists the VM in sync.
	waitFor(t, "proxy-status to list the VM SYNCED", 10*time.Second, allLogs, func() bool {
		out, _ := exec.Command("ip", "netns", "exec", hosts.cpNS, zmeshBin, "proxy-status",
			"--controlplane-admin", cpAddr+":15014").CombinedOutput()
		for _, line := range strings.Split(string(out), "\n") {
			if strings.Contains(line, "vm/legacy") && strings.Contains(line, want) && strings.Contains(line, "SYNCED") {
				return true
			}
		}
		return false
	})

	// A workload on the other host reaches the VM's app through both
	// proxies, over mTLS across the link: the VM's proxy sees the caller's
	// identity.
	var reply echoReply
	waitFor(t, "a call from the control plane's host to legacy.vm", 15*time.Second, allLogs, func() bool {
		resp, err := cpClient.Get("http://127.0.0.1:18080/call/legacy.vm.svc.cluster.local/from-caller")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var r callResult
		if json.NewDecoder(resp.Body).Decode(&r) != nil || r.Status != 200 {
			return false
		}
		return json.Unmarshal([]byte(r.Body), &reply) == nil
	})
	if xfcc := strings.Join(reply.Headers["X-Forwarded-Client-Cert"], ","); reply.Name != "legacy" ||
		!strings.Contains(xfcc, "URI=spiffe://cluster.local/ns/web/sa/caller") {
		t.Errorf("the call reached %q with XFCC %q, want legacy seeing the caller's SPIFFE ID", reply.Name, xfcc)
	}

	// The intruder has run as long as the VM proxy: it never got a
	// certificate, and the control plane said why.
	if code := httpStatus(vmClient, "http://"+intruderAdmin+"/ready"); code == 200 {
		t.Errorf("the proxy with a tampered token is ready")
	}
	if st, err := fetchProxyCerts(vmClient, intruderAdmin); err != nil {
		t.Errorf("intruder's /debug/certs: %v", err)
	} else if st.Ready || st.ChainPEM != "" {
		t.Errorf("the proxy with a tampered token holds a certificate: %+v", st)
	}
	refusal := false
	for _, line := range strings.Split(cp.Logs(), "\n") {
		if strings.Contains(line, "certificate refused") && strings.Contains(line, "reason=token_invalid") {
			refusal = true
		}
		if strings.Contains(line, "certificate issued") && strings.Contains(line, "/sa/admin") {
			t.Errorf("the control plane issued a certificate for the tampered identity: %s", line)
		}
	}
	if !refusal {
		t.Errorf("the control plane logged no refusal of the tampered token:\n%s", cp.Logs())
	}
	if strings.Contains(allLogs(), token) {
		t.Errorf("a bootstrap token reached a log")
	}
	if t.Failed() {
		t.Logf("control plane:\n%s\nVM proxy:\n%s\nintruder:\n%s\ncaller:\n%s", cp.Logs(), vm.Logs(), intruder.Logs(), caller.Logs())
	}
}

// createToken runs `zmesh token create` for ns/sa and writes the token to
// a file (mode 0600, as an operator would hand it over).
func createToken(t *testing.T, dataDir, ns, sa string) (token, file string) {
	t.Helper()
	out, err := exec.Command(zmeshBin, "token", "create", "--data-dir", dataDir,
		"--namespace", ns, "--service-account", sa, "--ttl", "2m").Output()
	if err != nil {
		t.Fatalf("zmesh token create: %v", err)
	}
	token = strings.TrimSpace(string(out))
	file = filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return token, file
}

// tamperToken replaces from with to in the claims of a bootstrap token
// (zmesh1.CLAIMS.SIGNATURE, base64url), keeping the signature.
func tamperToken(t *testing.T, token, from, to string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("bootstrap token has %d dot-separated parts, want 3", len(parts))
	}
	claims, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatalf("token claims: %v", err)
	}
	edited := bytes.Replace(claims, []byte(from), []byte(to), 1)
	if bytes.Equal(edited, claims) {
		t.Fatalf("token claims %s hold no %s; update this test", claims, from)
	}
	parts[1] = base64.RawURLEncoding.EncodeToString(edited)
	return strings.Join(parts, ".")
}

// hostPair is two network namespaces joined by a veth pair: two hosts on
// one /30, with nothing else reachable.
type hostPair struct {
	cpNS, vmNS string
	cpIP, vmIP string
}

// newHostPair creates the namespaces with names unique to this run; the
// test's cleanup deletes them (and with them the veth pair), whatever
// happened.
func newHostPair(t *testing.T) hostPair {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	suffix := hex.EncodeToString(b[:3])
	subnet := fmt.Sprintf("10.%d.%d.", 64+int(b[0])%64, int(b[3])&^3)
	h := hostPair{cpNS: "zmcp-" + suffix, vmNS: "zmvm-" + suffix, cpIP: subnet + "1", vmIP: subnet + "2"}
	cpLink, vmLink := "zmc"+suffix, "zmv"+suffix
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	t.Cleanup(func() {
		// Deleting a namespace deletes the veth end in it, and so the pair;
		// the link delete covers a failure before the ends were moved.
		for _, args := range [][]string{{"netns", "del", h.cpNS}, {"netns", "del", h.vmNS}, {"link", "del", cpLink}} {
			_ = exec.Command("ip", args...).Run()
		}
	})
	ip("netns", "add", h.cpNS)
	ip("netns", "add", h.vmNS)
	ip("link", "add", cpLink, "type", "veth", "peer", "name", vmLink)
	ip("link", "set", cpLink, "netns", h.cpNS)
	ip("link", "set", vmLink, "netns", h.vmNS)
	for _, end := range []struct{ ns, link, addr string }{{h.cpNS, cpLink, h.cpIP}, {h.vmNS, vmLink, h.vmIP}} {
		ip("-n", end.ns, "addr", "add", end.addr+"/30", "dev", end.link)
		ip("-n", end.ns, "link", "set", end.link, "up")
		ip("-n", end.ns, "link", "set", "lo", "up")
	}
	return h
}

// nsProcess is a process started in a network namespace, in its own
// process group, with its output kept.
type nsProcess struct {
	cmd  *exec.Cmd
	done chan struct{}
	mu   sync.Mutex
	out  bytes.Buffer
}

func (p *nsProcess) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

// Logs returns what the process printed so far.
func (p *nsProcess) Logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// startInNetns runs argv in the namespace ns with `ip netns exec` and env
// added to the test's environment (without HTTP_PROXY); the
// test's cleanup stops its whole process group (SIGTERM, then SIGKILL).
func startInNetns(t *testing.T, ns, name string, env []string, argv ...string) *nsProcess {
	t.Helper()
	p := &nsProcess{done: make(chan struct{})}
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", ns}, argv...)...)
	p.cmd.Env = append(append(os.Environ(), "HTTP_PROXY=", "http_proxy="), env...)
	p.cmd.Stdout, p.cmd.Stderr = p, p
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s in %s: %v", name, ns, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		pgid := p.cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			t.Errorf("%s did not stop within 5s of SIGTERM; killing it", name)
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-p.done
		}
		_ = syscall.Kill(-pgid, syscall.SIGKILL) // anything it left in its group
	})
	return p
}

// netnsClient is an HTTP client whose connections are opened inside the
// network namespace ns.
func netnsClient(ns string) *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		Proxy:             nil,
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dialInNetns(ctx, ns, network, addr)
		},
	}}
}

// dialInNetns opens a connection from inside the network namespace ns. A
// socket belongs to the namespace of the thread that created it, so the
// dial runs on a locked OS thread switched into ns and back. A thread that
// cannot be switched back stays locked, and Go ends it with its goroutine.
func dialInNetns(ctx context.Context, ns, network, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		c, restored, err := func() (net.Conn, bool, error) {
			orig, err := os.Open("/proc/thread-self/ns/net")
			if err != nil {
				return nil, true, err
			}
			defer orig.Close()
			target, err := os.Open(filepath.Join("/var/run/netns", ns))
			if err != nil {
				return nil, true, err
			}
			defer target.Close()
			if err := setns(target); err != nil {
				return nil, true, fmt.Errorf("enter netns %s: %w", ns, err)
			}
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			return c, setns(orig) == nil, err
		}()
		if restored {
			runtime.UnlockOSThread()
		}
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

func setns(f *os.File) error { return unix.Setns(int(f.Fd()), unix.CLONE_NEWNET) }

// httpStatus answers the status code of a GET, or 0 if it failed.
func httpStatus(c *http.Client, url string) int {
	resp, err := c.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// waitFor polls cond every 100 ms, failing with logs() after within.
func waitFor(t *testing.T, what string, within time.Duration, logs func() string, cond func() bool) {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("no %s after %s\n%s", what, within, logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("%s after %s", what, time.Since(start).Round(time.Millisecond))
}
