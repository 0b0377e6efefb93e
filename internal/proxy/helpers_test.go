package proxy

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/meshtest"
	"github.com/zmesh/zmesh/internal/registry"
	"github.com/zmesh/zmesh/internal/xds"
)

const testTD = "cluster.local"

// testCerts is a CertificateSource (and RenewalCounter) backed by a
// meshtest CA, whose certificate a test can swap (rotation) or remove.
type testCerts struct {
	ca        *meshtest.CA
	ns, sa    string
	uri       string
	svid      atomic.Pointer[x509svid.SVID]
	bundle    *x509bundle.Bundle
	rotations atomic.Uint64
}

func newTestCerts(t testing.TB, ca *meshtest.CA, ns, sa string) *testCerts {
	t.Helper()
	c := &testCerts{ca: ca, ns: ns, sa: sa, uri: "spiffe://" + ca.TrustDomain + "/ns/" + ns + "/sa/" + sa}
	c.bundle = x509bundle.FromX509Authorities(spiffeid.RequireTrustDomainFromString(ca.TrustDomain), []*x509.Certificate{ca.Cert})
	c.rotate(t)
	return c
}

// rotate issues a fresh certificate for the same identity.
func (c *testCerts) rotate(t testing.TB) { c.issue(t, c.uri, time.Hour) }

// issue installs a certificate for uri.
func (c *testCerts) issue(t testing.TB, uri string, ttl time.Duration) {
	t.Helper()
	tc := c.ca.IssueURI(t, uri, ttl)
	id, err := x509svid.IDFromCert(tc.Leaf)
	if err != nil {
		t.Fatal(err)
	}
	if c.svid.Swap(&x509svid.SVID{ID: id, Certificates: []*x509.Certificate{tc.Leaf}, PrivateKey: tc.PrivateKey.(crypto.Signer)}) != nil {
		c.rotations.Add(1)
	}
}

func (c *testCerts) Rotations() uint64       { return c.rotations.Load() }
func (c *testCerts) RenewalFailures() uint64 { return 0 }

func (c *testCerts) GetX509SVID() (*x509svid.SVID, error) {
	s := c.svid.Load()
	if s == nil {
		return nil, errors.New("no certificate yet")
	}
	return s, nil
}

func (c *testCerts) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	if td != c.bundle.TrustDomain() {
		return nil, fmt.Errorf("no bundle for %s", td)
	}
	return c.bundle, nil
}

// echoApp is a plaintext app that answers with what it received.
func echoApp(t testing.TB) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		if size, err := strconv.Atoi(r.URL.Query().Get("size")); err == nil {
			w.Header().Set("X-Received", strconv.FormatInt(n, 10))
			w.Write(bytes.Repeat([]byte("z"), size))
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "host=%s\npath=%s\nxfcc=%s\nsource=%s\n", r.Host, r.URL.RequestURI(),
			strings.Join(r.Header.Values("X-Forwarded-Client-Cert"), "|"), r.Header.Get(headerSourceWorkload))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// testProxy is a running proxy.
type testProxy struct {
	*Proxy
	certs *testCerts
	app   *httptest.Server
	reg   registry.Workload
	// stop stops the proxy and waits for Run to return; the test's
	// cleanup calls it too. It may be called more than once.
	stop func()
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("ZMESH_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// startProxy runs a proxy for ns/name (service account = name) in front of
// app until the test ends.
func startProxy(t testing.TB, ca *meshtest.CA, ns, name string, app *httptest.Server) *testProxy {
	t.Helper()
	return startProxyLog(t, ca, ns, name, app, testLogger(t))
}

func startProxyLog(t testing.TB, ca *meshtest.CA, ns, name string, app *httptest.Server, log *slog.Logger) *testProxy {
	t.Helper()
	appAddr := "127.0.0.1:1"
	if app != nil {
		appAddr = app.Listener.Addr().String()
	}
	tp := startProxyAt(t, ca, ns, name, appAddr, log)
	tp.app = app
	return tp
}

// startProxyAt runs a proxy for ns/name in front of the app at appAddr.
func startProxyAt(t testing.TB, ca *meshtest.CA, ns, name, appAddr string, log *slog.Logger) *testProxy {
	t.Helper()
	w := registry.Workload{Name: name, Namespace: ns, ServiceAccount: name, Labels: map[string]string{"app": name}, Services: []string{name}}
	return startProxyFor(t, ca, w, appAddr, func(c *Config) { c.Logger = log })
}

// startProxyFor runs a proxy for workload w (identity ns/serviceAccount)
// in front of the app at appAddr; tune may change its Config.
func startProxyFor(t testing.TB, ca *meshtest.CA, w registry.Workload, appAddr string, tune func(*Config)) *testProxy {
	t.Helper()
	certs := newTestCerts(t, ca, w.Namespace, w.ServiceAccount)
	cfg := Config{
		Workload:     w,
		TrustDomain:  ca.TrustDomain,
		InboundAddr:  "127.0.0.1:0",
		OutboundAddr: "127.0.0.1:0",
		AdminAddr:    "127.0.0.1:0",
		AppAddr:      appAddr,
		Certs:        certs,
		CertStatus:   func() any { return map[string]string{"identity": certs.uri} },
		Logger:       testLogger(t),
	}
	if tune != nil {
		tune(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	stop := sync.OnceFunc(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Run did not return")
		}
	})
	t.Cleanup(stop)
	w.Identity = certs.uri
	w.Address = p.InboundAddr().String()
	w.HasProxy = true
	return &testProxy{Proxy: p, certs: certs, reg: w, stop: stop}
}

// parse parses Istio YAML for a test.
func parse(t testing.TB, yaml string) []config.Resource {
	t.Helper()
	rs, _, err := config.Parse([]byte(yaml), t.Name())
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func mesh() xds.Mesh {
	return xds.Mesh{TrustDomain: testTD, RootNamespace: "istio-system", DNSDomain: "cluster.local"}
}

// serviceOf returns the registry service of a proxied workload.
func serviceOf(tp *testProxy) registry.Service {
	return registry.Service{
		Hostname:  tp.reg.Name + "." + tp.reg.Namespace + ".svc.cluster.local",
		Namespace: tp.reg.Namespace,
		Endpoints: []registry.Endpoint{{
			Address:  tp.reg.Address,
			Identity: tp.reg.Identity,
			HasProxy: true,
			Workload: tp.reg.Namespace + "/" + tp.reg.Name,
			Labels:   tp.reg.Labels,
		}},
	}
}

func mustApply(t testing.TB, p *testProxy, v *xds.View) {
	t.Helper()
	if err := p.Apply(v); err != nil {
		t.Fatalf("Apply: %v", err)
	}
}

// proxyClient returns an HTTP client that uses p's outbound listener as
// its HTTP proxy, as `zmesh up` configures apps.
func proxyClient(t testing.TB, p *testProxy) *http.Client {
	tr := &http.Transport{
		Proxy:               http.ProxyURL(mustURL("http://" + p.OutboundAddr().String())),
		MaxIdleConnsPerHost: 64,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func get(t testing.TB, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// dialRaw opens a plain TCP connection.
func dialRaw(t testing.TB, addr net.Addr) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr.String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// syncBuffer is a bytes.Buffer safe for concurrent writes, for logs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
