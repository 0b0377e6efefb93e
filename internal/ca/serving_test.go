package ca_test

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"

	"github.com/zmesh/zmesh/internal/ca"
	"github.com/zmesh/zmesh/internal/ca/catest"
)

func TestServingCertificateNames(t *testing.T) {
	root := newTestCA(t, "root", nil, caOpts{})
	inter := newTestCA(t, "inter", root, caOpts{})
	plugged := t.TempDir()
	writeCACerts(t, plugged, inter, []*x509.Certificate{inter.cert, root.cert}, root)

	for name, a := range map[string]*ca.Authority{
		"self-signed root": catest.NewAuthority(t, ca.Config{}),
		"plugged-in CA":    catest.NewAuthority(t, ca.Config{DataDir: plugged}),
	} {
		t.Run(name, func(t *testing.T) {
			cert, err := a.ServingCertificate("cp.example.internal", "10.1.2.3")
			if err != nil {
				t.Fatal(err)
			}
			inters := x509.NewCertPool()
			for _, der := range cert.Certificate[1:] {
				c, _ := x509.ParseCertificate(der)
				inters.AddCert(c)
			}
			for _, host := range []string{"localhost", "127.0.0.1", "istiod.istio-system.svc", "cp.example.internal", "10.1.2.3"} {
				if _, err := cert.Leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: a.BundlePool(), Intermediates: inters}); err != nil {
					t.Errorf("serving cert does not verify for %s: %v", host, err)
				}
			}
			if _, err := cert.Leaf.Verify(x509.VerifyOptions{DNSName: "evil.example", Roots: a.BundlePool(), Intermediates: inters}); err == nil {
				t.Error("serving cert verifies for a name it should not carry")
			}
			if len(cert.Leaf.URIs) != 0 {
				t.Error("serving cert carries a SPIFFE ID; it must not pass as a workload")
			}
		})
	}
}

// TestServerTLSConfig runs a real handshake: a client trusting only the
// bundle reaches the server by the names an agent dials, with and without a
// client certificate, and the server rotates its certificate at half-life.
func TestServerTLSConfig(t *testing.T) {
	clock := catest.NewClock(time.Now())
	a := catest.NewAuthority(t, ca.Config{Clock: clock.Now})
	cfg, err := ca.ServerTLSConfig(a)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ClientAuth != tls.VerifyClientCertIfGiven || cfg.MinVersion != tls.VersionTLS12 {
		t.Fatalf("ClientAuth = %v, MinVersion = %x", cfg.ClientAuth, cfg.MinVersion)
	}
	key := catest.NewKey(t)
	chain, err := a.Sign(parseCSR(t, catest.CSR(t, key)), workload, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	clientCert := tls.Certificate{Certificate: [][]byte{chain[0].Raw}, PrivateKey: key}

	handshake := func(t *testing.T, serverName string, certs []tls.Certificate) (serverLeaf, peer *x509.Certificate) {
		t.Helper()
		c, s := net.Pipe()
		defer c.Close()
		defer s.Close()
		srv := tls.Server(s, cfg)
		errc := make(chan error, 1)
		go func() { errc <- srv.Handshake() }()
		cli := tls.Client(c, &tls.Config{RootCAs: a.BundlePool(), ServerName: serverName, Certificates: certs, Time: clock.Now})
		if err := cli.Handshake(); err != nil {
			t.Fatalf("client handshake with %s: %v", serverName, err)
		}
		if err := <-errc; err != nil {
			t.Fatalf("server handshake: %v", err)
		}
		if p := srv.ConnectionState().PeerCertificates; len(p) > 0 {
			peer = p[0]
		}
		return cli.ConnectionState().PeerCertificates[0], peer
	}

	first, peer := handshake(t, "istiod.istio-system.svc", nil)
	if peer != nil {
		t.Error("server saw a client certificate that was not sent")
	}
	again, peer := handshake(t, "localhost", []tls.Certificate{clientCert})
	if peer == nil || !peer.Equal(chain[0]) {
		t.Error("server did not receive the client certificate")
	}
	if !again.Equal(first) {
		t.Error("serving certificate changed before half its lifetime")
	}
	clock.Add(ca.ServingTTL/2 + time.Minute)
	rotated, _ := handshake(t, "127.0.0.1", nil)
	if rotated.Equal(first) {
		t.Error("serving certificate not replaced after half its lifetime")
	}
}
