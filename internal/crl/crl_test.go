package crl

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"
)

// crlIssuer is a CA that also signs CRLs, for revocation tests.
type crlIssuer struct {
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	parent *crlIssuer
	serial int64
}

// newCRLIssuer makes a CA named cn, a root when parent is nil, else an
// intermediate of parent.
func newCRLIssuer(t *testing.T, cn string, parent *crlIssuer) *crlIssuer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true}
	signer, signerKey := tmpl, key
	if parent != nil {
		parent.serial++
		tmpl.SerialNumber = big.NewInt(100 + parent.serial)
		signer, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &crlIssuer{cert: cert, key: key, parent: parent}
}

// leaf issues a client certificate, with the chain up to (not
// including) the root.
func (i *crlIssuer) leaf(t *testing.T, cn string) (tls.Certificate, *x509.Certificate) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	i.serial++
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1000 + i.serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, i.cert, &key.PublicKey, i.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	out := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}
	for p := i; p.parent != nil; p = p.parent {
		out.Certificate = append(out.Certificate, p.cert.Raw)
	}
	return out, cert
}

// crl is i's CRL (PEM) listing revoked, current until next.
func (i *crlIssuer) crl(t *testing.T, next time.Time, revoked ...*x509.Certificate) []byte {
	t.Helper()
	tmpl := &x509.RevocationList{Number: big.NewInt(time.Now().UnixNano()), ThisUpdate: time.Now().Add(-time.Minute), NextUpdate: next}
	for _, c := range revoked {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: time.Now()})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, i.cert, i.key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
}

func mustCRLs(t *testing.T, pems ...[]byte) []*x509.RevocationList {
	t.Helper()
	var all []byte
	for _, p := range pems {
		all = append(all, p...)
	}
	crls, err := Parse(all)
	if err != nil {
		t.Fatal(err)
	}
	return crls
}

// TestCheckRevocation is the CRL decision as Envoy makes it for Istio's
// caCrl: every certificate of the chain needs a current CRL of its
// issuer that does not list it.
func TestCheckRevocation(t *testing.T) {
	now := time.Now()
	root := newCRLIssuer(t, "root", nil)
	impostor := newCRLIssuer(t, "root", nil) // same name, another key
	inter := newCRLIssuer(t, "intermediate", root)
	_, alice := root.leaf(t, "alice")
	_, bob := root.leaf(t, "bob")
	_, carol := inter.leaf(t, "carol")
	later := now.Add(time.Hour)
	direct := [][]*x509.Certificate{{alice, root.cert}}
	viaInter := [][]*x509.Certificate{{carol, inter.cert, root.cert}}
	for _, tc := range []struct {
		name    string
		chains  [][]*x509.Certificate
		crls    [][]byte
		wantErr string
	}{
		{name: "listed elsewhere, not this one", chains: direct, crls: [][]byte{root.crl(t, later, bob)}},
		{name: "an empty CRL", chains: direct, crls: [][]byte{root.crl(t, later)}},
		{name: "listed", chains: direct, crls: [][]byte{root.crl(t, later, alice)}, wantErr: "revoked"},
		{name: "expired CRL", chains: direct, crls: [][]byte{root.crl(t, now.Add(-time.Second))}, wantErr: "expired"},
		{name: "a CRL of the same name, another key", chains: direct, crls: [][]byte{impostor.crl(t, later)}, wantErr: "no CRL of"},
		{name: "the impostor's CRL cannot revoke", chains: direct, crls: [][]byte{impostor.crl(t, later, alice), root.crl(t, later)}},
		{name: "an intermediate without its CRL", chains: viaInter, crls: [][]byte{root.crl(t, later)}, wantErr: `no CRL of "CN=intermediate"`},
		{name: "an intermediate with its CRL", chains: viaInter, crls: [][]byte{root.crl(t, later), inter.crl(t, later)}},
		{name: "a revoked intermediate", chains: viaInter, crls: [][]byte{root.crl(t, later, inter.cert), inter.crl(t, later)}, wantErr: "revoked"},
		{name: "a leaf revoked by its intermediate", chains: viaInter, crls: [][]byte{root.crl(t, later), inter.crl(t, later, carol)}, wantErr: "revoked"},
		{name: "no chain", crls: [][]byte{root.crl(t, later)}, wantErr: "no verified chain"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(tc.chains, mustCRLs(t, tc.crls...), now)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("Check = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestParse(t *testing.T) {
	root := newCRLIssuer(t, "root", nil)
	p := root.crl(t, time.Now().Add(time.Hour))
	b, _ := pem.Decode(p)
	for _, tc := range []struct {
		name    string
		data    []byte
		want    int
		wantErr string
	}{
		{name: "PEM", data: p, want: 1},
		{name: "two PEM, a certificate between", data: append(append(append([]byte{}, p...), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.cert.Raw})...), p...), want: 2},
		{name: "DER", data: b.Bytes, want: 1},
		{name: "empty", data: nil, wantErr: "not a CRL"},
		{name: "PEM without a CRL", data: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.cert.Raw}), wantErr: "no X509 CRL"},
		{name: "a broken CRL block", data: pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: []byte("x")}), wantErr: "CRL 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			crls, err := Parse(tc.data)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Parse = %d, %v; want %q", len(crls), err, tc.wantErr)
				}
				return
			}
			if err != nil || len(crls) != tc.want {
				t.Fatalf("Parse = %d, %v; want %d", len(crls), err, tc.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("-----BEGIN X509 CRL-----\nMAA=\n-----END X509 CRL-----\n"))
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		crls, err := Parse(data)
		if err == nil && len(crls) == 0 {
			t.Fatal("no CRL and no error")
		}
	})
}
