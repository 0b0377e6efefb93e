package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// TestRootRotationUnderTraffic replaces the mesh root while frontend calls
// backend every 10 ms, following the operator's procedure of
// `zmesh ca rotate` (prepare, activate, retire, each allowed by --wait only
// one certificate lifetime after the previous step), and checking before
// each step that every proxy has caught up with the one before. No request
// may fail; at the end every proxy's certificate chains to the new root, no
// bundle still trusts the old one, and a control plane restarted with only
// the new root still reaches every proxy over xDS (a policy edit applies).
func TestRootRotationUnderTraffic(t *testing.T) {
	if testing.Short() {
		t.Skip("root rotation test takes ~20s")
	}
	const ttl = 6 * time.Second
	m := startMesh(t, "--cert-ttl", ttl.String())
	dataDir := meshDataDir(t, m)

	frontend, backend, stranger := m.w("web/frontend"), m.w("api/backend"), m.w("web/stranger")

	oldRoot := readSingleRoot(t, filepath.Join(dataDir, "root-cert.pem"))
	traffic := startTraffic(frontend.app, "backend.api/")
	t.Cleanup(func() { traffic.stop() }) // before the mesh stops (cleanups run last first)
	fresh := startFreshHandshakes(t, frontend, backend)
	backendBefore := handshakeCounts(t, backend.admin)
	start := time.Now()
	step := func(s string) {
		t.Helper()
		out := rotateStep(t, dataDir, s, ttl)
		t.Logf("%5.1fs %s:\n%s", time.Since(start).Seconds(), s, strings.TrimSpace(out))
	}

	step("prepare")
	newRoot := readSingleRoot(t, filepath.Join(dataDir, "zmesh-ca-next-cert.pem"))
	if newRoot.Equal(oldRoot) {
		t.Fatal("prepare made no new root")
	}
	waitAllProxies(t, m, "bundle holds the old and the new root", 15*time.Second, func(st proxyCerts) error {
		return st.wantBundle(oldRoot, newRoot)
	})
	t.Logf("%5.1fs every bundle holds both roots", time.Since(start).Seconds())

	step("activate")
	waitAllProxies(t, m, "certificate chains to the new root", 15*time.Second, func(st proxyCerts) error {
		return st.wantChainsTo(newRoot)
	})
	t.Logf("%5.1fs every certificate chains to the new root", time.Since(start).Seconds())

	step("retire")
	waitAllProxies(t, m, "bundle holds only the new root", 15*time.Second, func(st proxyCerts) error {
		return st.wantBundle(newRoot)
	})
	t.Logf("%5.1fs every bundle holds only the new root", time.Since(start).Seconds())
	if got := readSingleRoot(t, filepath.Join(dataDir, "root-cert.pem")); !got.Equal(newRoot) {
		t.Errorf("root-cert.pem after retire is %s, want the new root %s", got.Subject, newRoot.Subject)
	}

	// A control plane started afresh serves a certificate of the new root
	// only; proxies that verify it with their current bundle reconnect, and
	// a policy edit made afterwards reaches them.
	cp := childPID(t, zmeshBin, "controlplane", m.dir)
	if err := syscall.Kill(cp, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for pid := childPIDOrZero(zmeshBin, "controlplane", m.dir); pid == cp || pid == 0; pid = childPIDOrZero(zmeshBin, "controlplane", m.dir) {
		if time.Now().After(deadline) {
			t.Fatalf("control plane not restarted\n%s", m.Logs())
		}
		time.Sleep(50 * time.Millisecond)
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
	waitStatus(t, stranger.app, "backend.api/", 200, 10*time.Second)
	waitSynced(t, m.cpAdmin, 3, 10*time.Second)

	// Traffic goes on until every proxy has renewed once more, with the
	// new root alone, under the restarted control plane.
	serials := map[string]string{}
	for _, w := range m.workloads {
		st := readProxyCerts(t, w.admin)
		serials[st.SPIFFEID] = st.Serial
	}
	waitAllProxies(t, m, "a certificate renewed after the restart", 3*ttl, func(st proxyCerts) error {
		if st.Serial == serials[st.SPIFFEID] {
			return fmt.Errorf("still serial %s", st.Serial)
		}
		return st.wantChainsTo(newRoot)
	})
	n, failures := traffic.stop()
	nFresh, freshFailures := fresh.stop()
	t.Logf("%5.1fs %d requests through the proxies and %d on fresh mTLS connections during the rotation, %d and %d failed",
		time.Since(start).Seconds(), n, nFresh, len(failures), len(freshFailures))
	if n < 500 || nFresh < 100 {
		t.Errorf("only %d requests and %d fresh connections in the whole rotation; the traffic loops did not run steadily", n, nFresh)
	}
	if len(failures) > 0 {
		t.Errorf("%d of %d requests frontend->backend failed during the root rotation; the first ones:\n%s",
			len(failures), n, strings.Join(failures[:min(len(failures), 10)], "\n"))
	}
	if len(freshFailures) > 0 {
		t.Errorf("%d of %d fresh mTLS connections to backend failed during the root rotation; the first ones:\n%s",
			len(freshFailures), nFresh, strings.Join(freshFailures[:min(len(freshFailures), 10)], "\n"))
	}
	// The proxies retry a failed mesh dial, which could hide a handshake
	// refused for want of a root: their own counters must show none.
	for name, w := range m.workloads {
		if c := handshakeCounts(t, w.admin); c["server/error"]+c["client/error"] > 0 {
			t.Errorf("%s counted failed mTLS handshakes: %v", name, c)
		}
	}
	if after := handshakeCounts(t, backend.admin); after["server/ok"]-backendBefore["server/ok"] < float64(nFresh) {
		t.Errorf("backend counted %v server handshakes during the rotation, fewer than the %d fresh connections",
			after["server/ok"]-backendBefore["server/ok"], nFresh)
	}
	// Neither the CSR calls nor the xDS streams may have found a control
	// plane certificate they could not verify at any point.
	for _, line := range strings.Split(m.Logs(), "\n") {
		if strings.Contains(line, "unknown authority") || strings.Contains(line, "control plane certificate") {
			t.Errorf("trust broke during the rotation: %s", line)
			break
		}
	}
	for name, w := range m.workloads {
		st := readProxyCerts(t, w.admin)
		if err := st.wantChainsTo(newRoot); err != nil {
			t.Errorf("%s at the end: %v", name, err)
		}
		if err := st.wantBundle(newRoot); err != nil {
			t.Errorf("%s at the end: %v", name, err)
		}
		if st.chainsTo(oldRoot) == nil {
			t.Errorf("%s at the end: certificate still chains to the old root", name)
		}
	}
	if t.Failed() {
		t.Logf("zmesh up logs:\n%s", m.Logs())
	}
}

// waitSynced polls `zmesh proxy-status` until it lists n proxies SYNCED.
func waitSynced(t *testing.T, cpAdmin string, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		out, err := exec.Command(zmeshBin, "proxy-status", "--controlplane-admin", cpAdmin).CombinedOutput()
		if err == nil && strings.Count(string(out), "SYNCED") == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("proxy-status does not list %d proxies SYNCED after %s (%v):\n%s", n, within, err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// meshDataDir returns the control plane's data dir from the
// `zmesh: controlplane grpc=... data=DIR` line.
func meshDataDir(t *testing.T, m *mesh) string {
	t.Helper()
	for _, line := range strings.Split(m.Logs(), "\n") {
		line = strings.TrimPrefix(line, "stdout: ")
		if !strings.HasPrefix(line, "zmesh: controlplane ") {
			continue
		}
		for _, f := range strings.Fields(line) {
			if d, ok := strings.CutPrefix(f, "data="); ok {
				return d
			}
		}
	}
	t.Fatalf("no data= on the controlplane line\n%s", m.Logs())
	return ""
}

// rotateStep runs `zmesh ca rotate --step step --wait wait`, retrying while
// the CLI says the step is too early: the test moves on only when the CLI
// lets an operator, never with --force.
func rotateStep(t *testing.T, dataDir, step string, wait time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(wait + 5*time.Second)
	for {
		out, err := exec.Command(zmeshBin, "ca", "rotate", "--data-dir", dataDir,
			"--step", step, "--wait", wait.String()).CombinedOutput()
		if err == nil {
			return string(out)
		}
		if !strings.Contains(string(out), "too early") || time.Now().After(deadline) {
			t.Fatalf("zmesh ca rotate --step %s: %v\n%s", step, err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// readSingleRoot reads a PEM file that must hold exactly one certificate.
func readSingleRoot(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := parsePEMCerts(string(b))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if len(certs) != 1 {
		t.Fatalf("%s holds %d certificates, want 1", path, len(certs))
	}
	return certs[0]
}

func parsePEMCerts(s string) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := []byte(s)
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, fmt.Errorf("trailing data after the PEM certificates")
	}
	return certs, nil
}

// proxyCerts is the part of a proxy's /debug/certs (the agent's Status)
// these tests read.
type proxyCerts struct {
	SPIFFEID  string `json:"spiffeId"`
	Ready     bool   `json:"ready"`
	Serial    string `json:"serial"`
	Rotations int    `json:"rotations"`
	LastError string `json:"lastError"`
	ChainPEM  string `json:"chainPEM"`
	BundlePEM string `json:"bundlePEM"`
}

// fetchProxyCerts reads /debug/certs from admin with client.
func fetchProxyCerts(client *http.Client, admin string) (proxyCerts, error) {
	var st proxyCerts
	resp, err := client.Get("http://" + admin + "/debug/certs")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return st, fmt.Errorf("/debug/certs answered %d", resp.StatusCode)
	}
	err = json.NewDecoder(resp.Body).Decode(&st)
	return st, err
}

func readProxyCerts(t *testing.T, admin string) proxyCerts {
	t.Helper()
	st, err := fetchProxyCerts(plain, admin)
	if err != nil {
		t.Fatalf("%s/debug/certs: %v", admin, err)
	}
	return st
}

// wantBundle reports whether the bundle is exactly roots, in any order.
func (st proxyCerts) wantBundle(roots ...*x509.Certificate) error {
	got, err := parsePEMCerts(st.BundlePEM)
	if err != nil {
		return fmt.Errorf("bundle: %v", err)
	}
	key := func(cs []*x509.Certificate) string {
		var ks []string
		for _, c := range cs {
			ks = append(ks, string(c.Raw))
		}
		sort.Strings(ks)
		return strings.Join(ks, "|")
	}
	if key(got) != key(roots) {
		return fmt.Errorf("bundle holds %s, want %s", subjects(got), subjects(roots))
	}
	return nil
}

// chainsTo verifies the proxy's current chain against root alone.
func (st proxyCerts) chainsTo(root *x509.Certificate) error {
	chain, err := parsePEMCerts(st.ChainPEM)
	if err != nil || len(chain) == 0 {
		return fmt.Errorf("no certificate chain (%v)", err)
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(root)
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err = chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err
}

func (st proxyCerts) wantChainsTo(root *x509.Certificate) error {
	if err := st.chainsTo(root); err != nil {
		return fmt.Errorf("certificate %s does not chain to %s: %v", st.Serial, root.Subject, err)
	}
	return nil
}

func subjects(cs []*x509.Certificate) string {
	var s []string
	for _, c := range cs {
		s = append(s, c.Subject.String())
	}
	return "[" + strings.Join(s, "; ") + "]"
}

// waitAllProxies polls every proxy's /debug/certs until cond holds for all
// of them, failing after within with the last reason of each laggard.
func waitAllProxies(t *testing.T, m *mesh, what string, within time.Duration, cond func(proxyCerts) error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var lagging []string
		for name, w := range m.workloads {
			st, err := fetchProxyCerts(plain, w.admin)
			if err == nil {
				err = cond(st)
			}
			if err != nil {
				lagging = append(lagging, fmt.Sprintf("%s: %v", name, err))
			}
		}
		if len(lagging) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s not every proxy has %s:\n%s\n%s", within, what, strings.Join(lagging, "\n"), m.Logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// traffic runs a probe every period until stopped, recording every
// failure with its time.
type traffic struct {
	done     chan struct{}
	wg       sync.WaitGroup
	once     sync.Once
	mu       sync.Mutex
	n        int
	failures []string
}

// startTraffic calls target through the app every 10 ms; any error or
// non-200 answer is a failure.
func startTraffic(app, target string) *traffic {
	return startProbe(10*time.Millisecond, func() error {
		r, err := tryCall(app, target)
		if err == nil && r.Status != 200 {
			err = fmt.Errorf("status %d body %q", r.Status, r.Body)
		}
		return err
	})
}

func startProbe(period time.Duration, probe func() error) *traffic {
	tr := &traffic{done: make(chan struct{})}
	tr.wg.Add(1)
	go func() {
		defer tr.wg.Done()
		tick := time.NewTicker(period)
		defer tick.Stop()
		for {
			select {
			case <-tr.done:
				return
			case <-tick.C:
			}
			err := probe()
			tr.mu.Lock()
			tr.n++
			if err != nil {
				tr.failures = append(tr.failures, time.Now().Format("15:04:05.000")+" "+err.Error())
			}
			tr.mu.Unlock()
		}
	}()
	return tr
}

// stop ends the traffic and returns how many probes ran and the failures.
func (tr *traffic) stop() (int, []string) {
	tr.once.Do(func() { close(tr.done) })
	tr.wg.Wait()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.n, tr.failures
}

// startFreshHandshakes connects to the backend's inbound listener as the
// frontend every 50 ms, each time with a new mTLS handshake: the proxies
// pool their mesh connections, so steady traffic alone could ride one
// connection opened before the rotation. The frontend's SVID and bundle
// come from its Workload API, which follows the rotation.
func startFreshHandshakes(t *testing.T, frontend, backend workload) *traffic {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	src, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr(frontend.workloadAPI)))
	if err != nil {
		t.Fatalf("frontend's workload API at %q: %v", frontend.workloadAPI, err)
	}
	backendID := spiffeid.RequireFromString("spiffe://cluster.local/ns/api/sa/backend")
	tc := tlsconfig.MTLSClientConfig(src, src, tlsconfig.AuthorizeID(backendID))
	tc.MinVersion = tls.VersionTLS13
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		Proxy:             nil,
		TLSClientConfig:   tc,
		DisableKeepAlives: true,
		DialContext:       (&net.Dialer{}).DialContext,
	}}
	tr := startProbe(50*time.Millisecond, func() error {
		resp, err := client.Get("https://" + backend.inbound + "/fresh-handshake")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("backend answered %d", resp.StatusCode)
		}
		return nil
	})
	t.Cleanup(func() { tr.stop(); src.Close() })
	return tr
}

// handshakeCounts reads zmesh_tls_handshakes_total from a proxy's /metrics,
// keyed by "side/result".
func handshakeCounts(t *testing.T, admin string) map[string]float64 {
	t.Helper()
	resp, err := plain.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	counts := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "zmesh_tls_handshakes_total{") {
			continue
		}
		labels, value, _ := strings.Cut(strings.TrimPrefix(line, "zmesh_tls_handshakes_total{"), "} ")
		var side, result string
		for _, kv := range strings.Split(labels, ",") {
			k, v, _ := strings.Cut(kv, "=")
			v = strings.Trim(v, `"`)
			switch k {
			case "side":
				side = v
			case "result":
				result = v
			}
		}
		var f float64
		fmt.Sscan(value, &f)
		counts[side+"/"+result] += f
	}
	return counts
}
