package ca_test

import (
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/zmesh/zmesh/internal/ca"
	"github.com/zmesh/zmesh/internal/ca/catest"
	"github.com/zmesh/zmesh/internal/pemcert"
)

func newMemoryAuthority(t *testing.T, m ca.Material) *ca.Authority {
	t.Helper()
	key, err := ca.NewTokenKey()
	if err != nil {
		t.Fatal(err)
	}
	a, err := ca.New(ca.Config{TrustDomain: catest.TrustDomain}, m, key)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return a
}

func signVerifies(t *testing.T, a *ca.Authority, root *x509.Certificate) []*x509.Certificate {
	t.Helper()
	chain, err := a.Sign(parseCSR(t, catest.CSR(t, catest.NewKey(t))), workload, time.Hour)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(root)
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("issued chain does not verify against the root: %v", err)
	}
	return chain
}

func TestNewFromRootMaterial(t *testing.T) {
	m, err := ca.NewRootMaterial(ca.Config{TrustDomain: catest.TrustDomain})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.CertChain) != 0 || string(m.CACert) != string(m.RootCert) {
		t.Fatal("self-signed material is not laid out as istio-ca-secret (ca-cert = root-cert, empty cert-chain)")
	}
	a := newMemoryAuthority(t, m)
	if a.PluggedIn() {
		t.Error("PluggedIn = true for a root the CA made")
	}
	root := a.Bundle()[0]
	if !a.SigningCertificate().Equal(root) {
		t.Error("signing certificate is not the root")
	}
	signVerifies(t, a, root)
	// No data dir: the data-dir operations refuse instead of reading the
	// current directory.
	if _, err := a.Reload(); err == nil {
		t.Error("Reload succeeded on an Authority without a data dir")
	}
	if err := a.Rotate(ca.StepPrepare, ca.RotateOptions{}); err == nil {
		t.Error("Rotate succeeded on an Authority without a data dir")
	}
}

func TestSetMaterial(t *testing.T) {
	root := newTestCA(t, "offline root", nil, caOpts{})
	inter := newTestCA(t, "cluster", root, caOpts{})
	other := newTestCA(t, "other root", nil, caOpts{})
	plugged := ca.Material{
		CACert: pemCerts(inter.cert), CAKey: pemKey(t, inter.key),
		CertChain: pemCerts(inter.cert, root.cert), RootCert: pemCerts(root.cert), PluggedIn: true,
	}
	selfSigned, err := ca.NewRootMaterial(ca.Config{TrustDomain: catest.TrustDomain})
	if err != nil {
		t.Fatal(err)
	}
	a := newMemoryAuthority(t, selfSigned)
	first := a.Bundle()[0]
	updated := a.Updated()

	bad := []struct {
		name    string
		m       ca.Material
		wantErr string
	}{
		{name: "key of another CA", m: ca.Material{CACert: plugged.CACert, CAKey: pemKey(t, other.key), CertChain: plugged.CertChain, RootCert: plugged.RootCert}, wantErr: "does not match"},
		{name: "chain to another root", m: ca.Material{CACert: plugged.CACert, CAKey: plugged.CAKey, RootCert: pemCerts(other.cert)}, wantErr: "does not lead to a root"},
		{name: "no root", m: ca.Material{CACert: plugged.CACert, CAKey: plugged.CAKey, CertChain: plugged.CertChain}, wantErr: "root-cert.pem"},
		{name: "garbage key", m: ca.Material{CACert: plugged.CACert, CAKey: []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), CertChain: plugged.CertChain, RootCert: plugged.RootCert}, wantErr: "invalid key encoding"},
		{name: "empty", m: ca.Material{}, wantErr: "ca-cert.pem"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			changed, err := a.SetMaterial(tt.m)
			if err == nil || changed || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("SetMaterial = %v, %v; want error containing %q", changed, err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "BEGIN") {
				t.Errorf("error leaks key material: %v", err)
			}
			if !a.Bundle()[0].Equal(first) {
				t.Fatal("rejected material replaced the CA")
			}
		})
	}
	select {
	case <-updated:
		t.Fatal("Updated fired for rejected material")
	default:
	}

	changed, err := a.SetMaterial(plugged)
	if err != nil || !changed {
		t.Fatalf("SetMaterial(cacerts) = %v, %v", changed, err)
	}
	select {
	case <-updated:
	default:
		t.Fatal("Updated did not fire")
	}
	if !a.PluggedIn() || !a.Bundle()[0].Equal(root.cert) {
		t.Fatal("the plugged-in CA is not in force")
	}
	if chain := signVerifies(t, a, root.cert); !chain[1].Equal(inter.cert) {
		t.Error("leaf is not signed by ca-cert.pem")
	}
	if changed, err := a.SetMaterial(plugged); err != nil || changed {
		t.Errorf("SetMaterial(same) = %v, %v; want unchanged", changed, err)
	}
}

func TestNewRefusesDataDir(t *testing.T) {
	m, err := ca.NewRootMaterial(ca.Config{TrustDomain: catest.TrustDomain})
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ca.NewTokenKey()
	if _, err := ca.New(ca.Config{DataDir: t.TempDir(), TrustDomain: catest.TrustDomain}, m, key); err == nil {
		t.Error("New accepted a data dir")
	}
	if _, err := ca.New(ca.Config{TrustDomain: catest.TrustDomain}, m, nil); err == nil {
		t.Error("New accepted no token key")
	}
}

// FuzzParseMaterial feeds arbitrary bytes as each of the four keys: the
// parser must return an error or valid material, never panic.
func FuzzParseMaterial(f *testing.F) {
	m, err := ca.NewRootMaterial(ca.Config{TrustDomain: catest.TrustDomain})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(m.CACert, m.CAKey, m.CertChain, m.RootCert)
	f.Add([]byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"), []byte{}, []byte("x"), m.RootCert)
	f.Fuzz(func(t *testing.T, cert, key, chain, roots []byte) {
		err := ca.ParseMaterial(ca.Material{CACert: cert, CAKey: key, CertChain: chain, RootCert: roots}, time.Now())
		if err == nil {
			if _, perr := pemcert.Parse(cert); perr != nil {
				t.Fatalf("accepted ca-cert.pem that does not parse: %v", perr)
			}
		}
	})
}
