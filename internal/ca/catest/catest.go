// Package catest runs a real mesh CA for tests: an Authority in a temporary
// data dir and, optionally, its CSR service on a loopback gRPC/TLS listener.
// Tests of the agent, the proxy and the control plane use it instead of a
// mock, in the spirit of net/http/httptest.
package catest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/zmesh/zmesh/internal/ca"
	"github.com/zmesh/zmesh/internal/ca/csr"
)

// TrustDomain is the trust domain of test authorities.
var TrustDomain = spiffeid.RequireTrustDomainFromString("cluster.local")

// NewAuthority loads an Authority in a fresh temporary dir. cfg's DataDir and
// TrustDomain are filled in when empty.
func NewAuthority(t testing.TB, cfg ca.Config) *ca.Authority {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	if cfg.TrustDomain.IsZero() {
		cfg.TrustDomain = TrustDomain
	}
	a, err := ca.Load(cfg)
	if err != nil {
		t.Fatalf("catest: load authority: %v", err)
	}
	return a
}

// Server is a CSR service on a loopback gRPC/TLS listener.
type Server struct {
	// Addr is the listener's host:port.
	Addr      string
	Authority *ca.Authority
	// Registry holds the service's metrics.
	Registry *prometheus.Registry

	grpc *grpc.Server
	done chan struct{}
}

// Serve starts a's CSR service on 127.0.0.1:0, stopped at test cleanup.
func Serve(t testing.TB, a *ca.Authority) *Server {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("catest: listen: %v", err)
	}
	return ServeListener(t, a, lis)
}

// ServeListener is Serve on a given listener (for tests that need a known
// address before the server starts).
func ServeListener(t testing.TB, a *ca.Authority, lis net.Listener) *Server {
	t.Helper()
	return serve(t, csr.Config{Authority: a}, lis)
}

// ServeService is Serve with a CSR service configured by cfg (rate limits,
// authenticators); cfg.Authority is required and cfg.Registerer is set.
func ServeService(t testing.TB, cfg csr.Config) *Server {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("catest: listen: %v", err)
	}
	return serve(t, cfg, lis)
}

func serve(t testing.TB, cfg csr.Config, lis net.Listener) *Server {
	t.Helper()
	a := cfg.Authority
	tlsCfg, err := ca.ServerTLSConfig(a)
	if err != nil {
		t.Fatalf("catest: server TLS config: %v", err)
	}
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	svc, err := csr.NewService(cfg)
	if err != nil {
		t.Fatalf("catest: new service: %v", err)
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(tlsCfg)))
	svc.Register(gs)
	s := &Server{Addr: lis.Addr().String(), Authority: a, Registry: reg, grpc: gs, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		_ = gs.Serve(lis)
	}()
	t.Cleanup(s.Stop)
	return s
}

// Stop stops the server and waits for it; safe to call more than once.
func (s *Server) Stop() {
	s.grpc.Stop()
	<-s.done
}

// RootPool returns the authority's bundle as a pool, as an agent would load
// it from root-cert.pem.
func (s *Server) RootPool() *x509.CertPool { return s.Authority.BundlePool() }

// NewKey returns a fresh ECDSA P-256 key.
func NewKey(t testing.TB) crypto.Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("catest: generate key: %v", err)
	}
	return k
}

// CSR returns a PEM certificate request for key naming the given URIs.
func CSR(t testing.TB, key crypto.Signer, uris ...string) []byte {
	t.Helper()
	tmpl := &x509.CertificateRequest{}
	for _, u := range uris {
		parsed, err := url.Parse(u)
		if err != nil {
			t.Fatalf("catest: parse %q: %v", u, err)
		}
		tmpl.URIs = append(tmpl.URIs, parsed)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatalf("catest: create CSR: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

// Clock is a settable clock for Config.Clock; safe for concurrent use.
type Clock struct {
	ch chan time.Time
}

// NewClock returns a Clock set to now.
func NewClock(now time.Time) *Clock {
	c := &Clock{ch: make(chan time.Time, 1)}
	c.ch <- now
	return c
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	t := <-c.ch
	c.ch <- t
	return t
}

// Add moves the clock by d.
func (c *Clock) Add(d time.Duration) {
	t := <-c.ch
	c.ch <- t.Add(d)
}
