package ca_test

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/zmesh/zmesh/internal/ca"
	"github.com/zmesh/zmesh/internal/ca/catest"
)

var workload = spiffeid.RequireFromString("spiffe://cluster.local/ns/foo/sa/bar")

// writeCACerts writes Istio cacerts files for signing CA inter, with
// cert-chain.pem holding chain and root-cert.pem the root.
func writeCACerts(t *testing.T, dir string, inter *testCA, chain []*x509.Certificate, root *testCA) {
	t.Helper()
	writeFile(t, dir, ca.CACertFile, pemCerts(inter.cert))
	writeFile(t, dir, ca.CAKeyFile, pemKey(t, inter.key))
	writeFile(t, dir, ca.CertChainFile, pemCerts(chain...))
	writeFile(t, dir, ca.RootCertFile, pemCerts(root.cert))
}

func TestLoadPluggedInCACerts(t *testing.T) {
	root := newTestCA(t, "offline root", nil, caOpts{})
	mid := newTestCA(t, "regional", root, caOpts{})
	leafCA := newTestCA(t, "cluster", mid, caOpts{})
	tests := []struct {
		name      string
		signer    *testCA
		chainFile []*x509.Certificate
		want      []*x509.Certificate // after the leaf
	}{
		{name: "istio layout: ca-cert then root", signer: mid, chainFile: []*x509.Certificate{mid.cert, root.cert}, want: []*x509.Certificate{mid.cert, root.cert}},
		{name: "chain file without the root", signer: mid, chainFile: []*x509.Certificate{mid.cert}, want: []*x509.Certificate{mid.cert, root.cert}},
		{name: "chain file without ca-cert", signer: mid, chainFile: []*x509.Certificate{root.cert}, want: []*x509.Certificate{mid.cert, root.cert}},
		{name: "two intermediates", signer: leafCA, chainFile: []*x509.Certificate{leafCA.cert, mid.cert, root.cert}, want: []*x509.Certificate{leafCA.cert, mid.cert, root.cert}},
		{name: "ca-cert is the root", signer: root, chainFile: []*x509.Certificate{root.cert}, want: []*x509.Certificate{root.cert}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeCACerts(t, dir, tt.signer, tt.chainFile, root)
			rootFile, _ := os.ReadFile(filepath.Join(dir, ca.RootCertFile))

			a := catest.NewAuthority(t, ca.Config{DataDir: dir})
			if !a.PluggedIn() {
				t.Error("PluggedIn = false")
			}
			if b := a.Bundle(); len(b) != 1 || !b[0].Equal(root.cert) {
				t.Fatal("bundle is not the offline root")
			}
			chain, err := a.Sign(parseCSR(t, catest.CSR(t, catest.NewKey(t))), workload, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			if len(chain) != len(tt.want)+1 {
				t.Fatalf("chain has %d certificates, want %d", len(chain), len(tt.want)+1)
			}
			for i, c := range tt.want {
				if !chain[i+1].Equal(c) {
					t.Errorf("chain[%d] = %q, want %q", i+1, chain[i+1].Subject, c.Subject)
				}
			}
			verifyChain(t, a, chain, workload)
			if after, _ := os.ReadFile(filepath.Join(dir, ca.RootCertFile)); string(after) != string(rootFile) {
				t.Error("Load rewrote the operator's root-cert.pem")
			}
			for _, name := range []string{ca.SelfSignedCertFile, ca.SelfSignedKeyFile} {
				if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
					t.Errorf("self-signed %s created next to cacerts", name)
				}
			}
		})
	}
}

func TestLoadRefusesBadCACerts(t *testing.T) {
	root := newTestCA(t, "root", nil, caOpts{})
	inter := newTestCA(t, "inter", root, caOpts{})
	otherRoot := newTestCA(t, "other root", nil, caOpts{})
	otherInter := newTestCA(t, "other inter", otherRoot, caOpts{})
	notCA := newTestCA(t, "not a CA", root, caOpts{notCA: true})
	expired := newTestCA(t, "expired", root, caOpts{notBefore: time.Now().Add(-48 * time.Hour), notAfter: time.Now().Add(-time.Hour)})
	future := newTestCA(t, "future", root, caOpts{notBefore: time.Now().Add(time.Hour)})

	good := func(t *testing.T, dir string) {
		writeCACerts(t, dir, inter, []*x509.Certificate{inter.cert, root.cert}, root)
	}
	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string)
		wantErr string
	}{
		{name: "key of another CA", setup: func(t *testing.T, dir string) {
			good(t, dir)
			writeFile(t, dir, ca.CAKeyFile, pemKey(t, otherInter.key))
		}, wantErr: "does not match"},
		{name: "signing cert is not a CA", setup: func(t *testing.T, dir string) {
			writeCACerts(t, dir, notCA, []*x509.Certificate{notCA.cert, root.cert}, root)
		}, wantErr: "not a CA"},
		{name: "expired intermediate", setup: func(t *testing.T, dir string) {
			writeCACerts(t, dir, expired, []*x509.Certificate{expired.cert, root.cert}, root)
		}, wantErr: "expired"},
		{name: "not yet valid intermediate", setup: func(t *testing.T, dir string) {
			writeCACerts(t, dir, future, []*x509.Certificate{future.cert, root.cert}, root)
		}, wantErr: "not valid before"},
		{name: "intermediate of another root", setup: func(t *testing.T, dir string) {
			writeCACerts(t, dir, otherInter, []*x509.Certificate{otherInter.cert}, root)
		}, wantErr: "does not lead to a root"},
		{name: "chain out of order", setup: func(t *testing.T, dir string) {
			writeCACerts(t, dir, inter, []*x509.Certificate{inter.cert, otherRoot.cert, root.cert}, root)
		}, wantErr: "out of order"},
		{name: "missing root-cert.pem", setup: func(t *testing.T, dir string) {
			good(t, dir)
			os.Remove(filepath.Join(dir, ca.RootCertFile))
		}, wantErr: "lacks root-cert.pem"},
		{name: "missing key and chain", setup: func(t *testing.T, dir string) {
			good(t, dir)
			os.Remove(filepath.Join(dir, ca.CAKeyFile))
			os.Remove(filepath.Join(dir, ca.CertChainFile))
		}, wantErr: "lacks ca-key.pem, cert-chain.pem"},
		{name: "garbage key", setup: func(t *testing.T, dir string) {
			good(t, dir)
			writeFile(t, dir, ca.CAKeyFile, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
		}, wantErr: "invalid key encoding"},
		{name: "root bundle holds a leaf", setup: func(t *testing.T, dir string) {
			good(t, dir)
			writeFile(t, dir, ca.RootCertFile, pemCerts(root.cert, notCA.cert))
		}, wantErr: "is not a CA"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tt.setup(t, dir)
			_, err := ca.Load(ca.Config{DataDir: dir, TrustDomain: catest.TrustDomain})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Load = %v, want error containing %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "BEGIN") {
				t.Errorf("error leaks key material: %v", err)
			}
		})
	}
}

// verifyChain checks that chain (leaf..root) verifies against a's bundle and
// is a valid X509-SVID.
func verifyChain(t *testing.T, a *ca.Authority, chain []*x509.Certificate, want spiffeid.ID) {
	t.Helper()
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{
		Roots: a.BundlePool(), Intermediates: inter, CurrentTime: a.Clock()(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}); err != nil {
		t.Fatalf("issued chain does not verify: %v", err)
	}
	if !chain[len(chain)-1].Equal(a.Bundle()[0]) {
		t.Error("chain does not end with the root")
	}
	// A peer verifying with go-spiffe (the proxy does) accepts it as an
	// X509-SVID for want.
	bundle := x509bundle.FromX509Authorities(a.TrustDomain(), a.Bundle())
	id, _, err := x509svid.Verify(chain[:len(chain)-1], bundle, x509svid.WithTime(a.Clock()()))
	if err != nil {
		t.Fatalf("issued chain is not a valid X509-SVID: %v", err)
	}
	if id != want {
		t.Errorf("SVID ID = %s", id)
	}
}
