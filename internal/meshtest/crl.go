package meshtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"testing"
	"time"
)

// CRLIssuer is a CA that also signs CRLs, for revocation tests: a root,
// or an intermediate of another CRLIssuer.
type CRLIssuer struct {
	Cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	parent *CRLIssuer
	serial int64
}

// NewCRLIssuer makes a CA named cn, a root when parent is nil, else an
// intermediate of parent.
func NewCRLIssuer(t testing.TB, cn string, parent *CRLIssuer) *CRLIssuer {
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
		signer, signerKey = parent.Cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &CRLIssuer{Cert: cert, key: key, parent: parent}
}

// Leaf issues a client certificate, with the chain up to (not
// including) the root.
func (i *CRLIssuer) Leaf(t testing.TB, cn string) (tls.Certificate, *x509.Certificate) {
	t.Helper()
	return i.issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: cn}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
}

// ServerLeaf issues a server certificate for dnsName, with the chain up
// to (not including) the root.
func (i *CRLIssuer) ServerLeaf(t testing.TB, dnsName string) (tls.Certificate, *x509.Certificate) {
	t.Helper()
	return i.issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: dnsName}, DNSNames: []string{dnsName}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
}

// issue signs tmpl (its names and usage) for a new key, valid for the
// hour around now.
func (i *CRLIssuer) issue(t testing.TB, tmpl *x509.Certificate) (tls.Certificate, *x509.Certificate) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	i.serial++
	tmpl.SerialNumber = big.NewInt(1000 + i.serial)
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, i.Cert, &key.PublicKey, i.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	out := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}
	for p := i; p.parent != nil; p = p.parent {
		out.Certificate = append(out.Certificate, p.Cert.Raw)
	}
	return out, cert
}

// CRL is i's CRL (PEM) listing revoked, current until next.
func (i *CRLIssuer) CRL(t testing.TB, next time.Time, revoked ...*x509.Certificate) []byte {
	t.Helper()
	tmpl := &x509.RevocationList{Number: big.NewInt(time.Now().UnixNano()), ThisUpdate: time.Now().Add(-time.Minute), NextUpdate: next}
	for _, c := range revoked {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: time.Now()})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, i.Cert, i.key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
}
