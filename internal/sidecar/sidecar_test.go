package sidecar

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/zmesh/zmesh/internal/agent/agenttest"
	"github.com/zmesh/zmesh/internal/agent/sds"
	"github.com/zmesh/zmesh/internal/boundedio"
	"github.com/zmesh/zmesh/internal/ca"
	"github.com/zmesh/zmesh/internal/controlplane"
	"github.com/zmesh/zmesh/internal/registry"
)

func TestValidate(t *testing.T) {
	valid := func() Config {
		return Config{
			ControlPlane: "127.0.0.1:15012", RootCertFile: "root-cert.pem", AppAddr: "127.0.0.1:8080",
			InboundAddr: "127.0.0.1:15006",
			Workload:    registry.Workload{Name: "backend", Namespace: "api", ServiceAccount: "backend"},
		}
	}
	for _, tc := range []struct {
		name   string
		change func(*Config)
		want   string // in the error; "" for none
	}{
		{"a complete config", func(*Config) {}, ""},
		{"no control plane", func(c *Config) { c.ControlPlane = "" }, "control plane address"},
		{"no trust bundle", func(c *Config) { c.RootCertFile = "" }, "root certificate"},
		{"no workload name", func(c *Config) { c.Workload.Name = "" }, "workload name"},
		{"no namespace", func(c *Config) { c.Workload.Namespace = "" }, "workload name"},
		{"no service account", func(c *Config) { c.Workload.ServiceAccount = "" }, "service account"},
		{"no app", func(c *Config) { c.AppAddr = "" }, "app address"},
		{"a negative drain", func(c *Config) { c.DrainDuration = -time.Second }, "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := valid()
			tc.change(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Validate() = %v, want an error about %q", err, tc.want)
			}
		})
	}

	c := valid()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.TrustDomain != "cluster.local" || c.DNSDomain != "cluster.local" || c.AdvertiseAddr != c.InboundAddr ||
		c.DrainDuration != DefaultDrainDuration || c.Logger == nil {
		t.Errorf("defaults not filled in: trust domain %q, DNS domain %q, advertise %q, drain %s, logger %v",
			c.TrustDomain, c.DNSDomain, c.AdvertiseAddr, c.DrainDuration, c.Logger)
	}
}

func TestGCPercent(t *testing.T) {
	for _, tt := range []struct {
		configured, want int
		set              bool
	}{
		{0, DefaultGCPercent, true}, {30, 30, true}, {200, 200, true}, {-1, 0, false},
	} {
		if got, set := gcPercent(tt.configured); got != tt.want || set != tt.set {
			t.Errorf("gcPercent(%d) = %d, %v; want %d, %v", tt.configured, got, set, tt.want, tt.set)
		}
	}
}

func TestReadToken(t *testing.T) {
	if _, err := readToken("")(); err == nil {
		t.Error("no token file configured: want an error")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "token")
	read := readToken(path)
	if _, err := read(); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, want not exist", err)
	}
	// Read at each call: an operator replaces an expired token in place.
	for _, tok := range []string{"first", "second"} {
		if err := os.WriteFile(path, []byte("  "+tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if got, err := read(); err != nil || got != tok {
			t.Errorf("read() = %q, %v; want %q (trimmed)", got, err, tok)
		}
	}
	if err := os.WriteFile(path, make([]byte, maxTokenFile+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := read(); !errors.Is(err, boundedio.ErrTooLarge) {
		t.Errorf("a token file past %d bytes: %v, want too large", maxTokenFile, err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readToken(fifo)(); !errors.Is(err, boundedio.ErrNotRegular) {
		t.Errorf("a FIFO in the token file's place: %v, want refused at once", err)
	}
}

func TestLoadTrustBundle(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "root-cert.pem")
	writeRoot(t, good)
	notPEM := filepath.Join(dir, "not-pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, file, td, want string
	}{
		{"missing file", filepath.Join(dir, "none.pem"), "cluster.local", "trust bundle"},
		{"not PEM", notPEM, "cluster.local", "trust bundle " + notPEM},
		{"bad trust domain", good, "Not A Domain", "trust domain"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := loadTrustBundle(Config{RootCertFile: tc.file, TrustDomain: tc.td})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("loadTrustBundle = %v, want an error about %q", err, tc.want)
			}
		})
	}
	td, roots, err := loadTrustBundle(Config{RootCertFile: good, TrustDomain: "cluster.local"})
	if err != nil || td.String() != "cluster.local" || len(roots) != 1 {
		t.Errorf("loadTrustBundle(good) = %v, %d roots, %v", td, len(roots), err)
	}
}

// TestRunClosesWhatItBoundWhenBuildFails: an SDS file that cannot be read
// fails the start after the proxy has bound its listeners; Run must
// close them again (a restart loop would otherwise leak a port a try).
func TestRunClosesWhatItBoundWhenBuildFails(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "root-cert.pem")
	writeRoot(t, root)
	cfg := Config{
		ControlPlane: "127.0.0.1:1", RootCertFile: root, AppAddr: "127.0.0.1:1",
		InboundAddr: "127.0.0.1:0", OutboundAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
		Workload:  registry.Workload{Name: "gw", Namespace: "istio-system", ServiceAccount: "gw"},
		SDSSocket: filepath.Join(dir, "sds.sock"),
		SDSFiles:  []sds.File{{Name: "cert", CertChain: filepath.Join(dir, "none.crt"), PrivateKey: filepath.Join(dir, "none.key")}},
		Logger:    slog.New(slog.DiscardHandler),
	}
	before := openFiles(t)
	err := Run(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "none.crt") {
		t.Fatalf("Run = %v, want the unreadable SDS file named", err)
	}
	if after := openFiles(t); after != before {
		t.Errorf("%d open files after the failed start, %d before: its listeners were left open", after, before)
	}
}

// TestRunServesTheMesh runs a real control plane and two sidecars in this
// process: the frontend's request reaches the backend's app over mutual
// TLS carrying the frontend's identity, the backend's policy (pushed by
// the control plane) is enforced, an app beside the backend gets the
// backend's identity from the Workload API, and each sidecar stops when
// asked, by its context or by POST /quitquitquit, closing its listeners
// and removing its socket.
func TestRunServesTheMesh(t *testing.T) {
	logs := &startLog{}
	log := slog.New(logs)
	cpDir, configDir := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(configDir, "mesh.yaml"), `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: backend, namespace: api}
spec:
  selector: {matchLabels: {app: backend}}
  action: ALLOW
  rules:
  - from: [{source: {principals: ["cluster.local/ns/web/sa/frontend"]}}]
    to: [{operation: {notPaths: ["/admin"]}}]
`)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cpDone := make(chan error, 1)
	go func() {
		cpDone <- controlplane.Run(ctx, controlplane.Config{
			ConfigDir: configDir, DataDir: cpDir, Listen: "127.0.0.1:0", CertTTL: time.Hour, Logger: log,
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-cpDone; err != nil {
			t.Errorf("control plane: %v", err)
		}
	})
	grpcAddr := logs.wait(t, "control plane serving", "", "grpc")

	seen := make(chan http.Header, 10)
	backendApp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Clone()
		io.WriteString(w, "backend")
	}))
	defer backendApp.Close()
	frontendApp := httptest.NewServer(http.NotFoundHandler())
	defer frontendApp.Close()

	backendSocket := agenttest.SocketPath(t, "workload.sock")
	start := func(ns, name, app string) (stop context.CancelFunc, done chan error) {
		tok, err := ca.IssueToken(cpDir, ns, name, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		tokenFile := filepath.Join(t.TempDir(), "token")
		writeFile(t, tokenFile, tok)
		socket := ""
		if name == "backend" {
			socket = backendSocket
		}
		sctx, stop := context.WithCancel(ctx)
		done = make(chan error, 1)
		go func() {
			done <- Run(sctx, Config{
				ControlPlane: grpcAddr, RootCertFile: filepath.Join(cpDir, "root-cert.pem"), TokenFile: tokenFile,
				Workload: registry.Workload{Name: name, Namespace: ns, ServiceAccount: name,
					Labels: map[string]string{"app": name}, Services: []string{name}},
				InboundAddr: "127.0.0.1:0", OutboundAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", WorkloadAPISocket: socket,
				AppAddr: strings.TrimPrefix(app, "http://"), DrainDuration: time.Second, Logger: log.With("sidecar_test", ns+"/"+name),
			})
		}()
		return stop, done
	}
	stopBackend, backendDone := start("api", "backend", backendApp.URL)
	stopFrontend, frontendDone := start("web", "frontend", frontendApp.URL)
	defer stopBackend()
	defer stopFrontend()
	outbound := logs.wait(t, "proxy started", "web/frontend", "outbound")
	frontendAdmin := logs.wait(t, "proxy started", "web/frontend", "admin")
	backendInbound := logs.wait(t, "proxy started", "api/backend", "inbound")

	get := func(path string) (int, error) {
		req, _ := http.NewRequest("GET", "http://"+outbound+path, nil)
		req.Host = "backend.api.svc.cluster.local"
		resp, err := plain.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	// The first request may come before the frontend has the backend's
	// endpoint or the backend its policy: wait for both, by the answer.
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, err := get("/hello")
		if code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("frontend -> backend: %d %v after 20s", code, err)
		}
		time.Sleep(50 * time.Millisecond) // polling for a push; no event to await from here
	}
	h := <-seen
	if xfcc := h.Get("X-Forwarded-Client-Cert"); !strings.Contains(xfcc, "URI=spiffe://cluster.local/ns/web/sa/frontend") {
		t.Errorf("the backend's app saw X-Forwarded-Client-Cert %q, want the frontend's SPIFFE ID", xfcc)
	}
	if code, err := get("/admin"); code != 403 {
		t.Errorf("GET /admin: %d %v, want 403 from the backend's policy", code, err)
	}
	// Plaintext straight to the backend's inbound meets STRICT mTLS.
	if resp, err := plain.Get("http://" + backendInbound + "/hello"); err == nil {
		resp.Body.Close()
		t.Errorf("plaintext to the backend's inbound answered %d, want the connection refused", resp.StatusCode)
	}

	// A SPIFFE-aware app beside the backend gets the backend's identity
	// from its sidecar's Workload API, chained to the mesh's root.
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	svid, err := workloadapi.FetchX509SVID(wctx, workloadapi.WithAddr("unix://"+backendSocket))
	wcancel()
	if err != nil {
		t.Fatalf("Workload API: %v", err)
	}
	if svid.ID.String() != "spiffe://cluster.local/ns/api/sa/backend" {
		t.Errorf("Workload API served %s, want the backend's identity", svid.ID)
	}
	roots := x509.NewCertPool()
	rootPEM, _ := os.ReadFile(filepath.Join(cpDir, "root-cert.pem"))
	roots.AppendCertsFromPEM(rootPEM)
	inter := x509.NewCertPool()
	for _, c := range svid.Certificates[1:] {
		inter.AddCert(c)
	}
	if _, err := svid.Certificates[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("the Workload API's SVID does not chain to the mesh root: %v", err)
	}

	// SIGTERM: Run drains and returns nil; the inbound listener is closed.
	stopBackend()
	select {
	case err := <-backendDone:
		if err != nil {
			t.Errorf("backend sidecar: Run = %v after its context ended, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("backend sidecar still running 10s after its context ended (drain 1s)")
	}
	if c, err := net.Dial("tcp", backendInbound); err == nil {
		c.Close()
		t.Errorf("backend's inbound %s still accepts after Run returned", backendInbound)
	}
	if _, err := os.Stat(backendSocket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the Workload API socket is still there after Run returned: %v", err)
	}

	// POST /quitquitquit from loopback stops the frontend the same way.
	resp, err := plain.Post("http://"+frontendAdmin+"/quitquitquit", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	select {
	case err := <-frontendDone:
		if err != nil {
			t.Errorf("frontend sidecar: Run = %v after /quitquitquit, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("frontend sidecar still running 10s after /quitquitquit")
	}
	if c, err := net.Dial("tcp", outbound); err == nil {
		c.Close()
		t.Errorf("frontend's outbound %s still accepts after Run returned", outbound)
	}
}

var plain = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}

// startLog is a slog.Handler that keeps the attributes of every record,
// so that a test learns the addresses the parts bound (port 0) from the
// lines they log when they start.
type startLog struct {
	mu      sync.Mutex
	records []map[string]string
	attrs   []slog.Attr
}

func (h *startLog) Enabled(context.Context, slog.Level) bool { return true }

func (h *startLog) Handle(_ context.Context, r slog.Record) error {
	m := map[string]string{"msg": r.Message}
	for _, a := range h.attrs {
		m[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value.String(); return true })
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, m)
	return nil
}

func (h *startLog) WithAttrs(attrs []slog.Attr) slog.Handler {
	// Every derived handler shares the records of the first.
	return &derivedLog{root: h, attrs: attrs}
}

func (h *startLog) WithGroup(string) slog.Handler { return h }

type derivedLog struct {
	root  *startLog
	attrs []slog.Attr
}

func (d *derivedLog) Enabled(context.Context, slog.Level) bool { return true }
func (d *derivedLog) Handle(ctx context.Context, r slog.Record) error {
	r = r.Clone()
	r.AddAttrs(d.attrs...)
	return d.root.Handle(ctx, r)
}
func (d *derivedLog) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &derivedLog{root: d.root, attrs: append(append([]slog.Attr{}, d.attrs...), attrs...)}
}
func (d *derivedLog) WithGroup(string) slog.Handler { return d }

// wait returns attribute key of the first record with message msg (and
// the sidecar_test attribute workload, unless empty), waiting up to 30 s.
func (h *startLog) wait(t *testing.T, msg, workload, key string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		h.mu.Lock()
		for _, r := range h.records {
			if r["msg"] == msg && (workload == "" || r["sidecar_test"] == workload) && r[key] != "" {
				h.mu.Unlock()
				return r[key]
			}
		}
		h.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("no %q log line with %s after 30s", msg, key)
		}
		time.Sleep(20 * time.Millisecond) // polling a log; no event to await
	}
}

// writeRoot writes a self-signed CA certificate to path.
func writeRoot(t *testing.T, path string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{Organization: []string{"cluster.local"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// openFiles counts this process's open file descriptors.
func openFiles(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(fds)
}
