package meshtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/zmesh/zmesh/internal/ca"
	"github.com/zmesh/zmesh/internal/ca/catest"
)

// CA is a test certificate authority backed by the mesh's real one
// (internal/ca, through catest): mesh identities are issued by the
// authority's own signing path from a CSR, as the control plane issues
// them, so tests of the proxy see exactly the certificates a mesh has.
// What the real CA rightly refuses to issue — another trust domain's
// identity, no identity, a non-SPIFFE URI, a serving certificate for
// localhost — is signed by hand with the same root's key, for tests that
// need such peers. Keys live in memory and in the test's temporary dir.
type CA struct {
	TrustDomain string
	Cert        *x509.Certificate // the root
	// Authority is the real CA behind this one.
	Authority *ca.Authority
	key       crypto.Signer // the root's key, for what the CA would not issue
	serial    atomic.Int64
}

// NewCA returns a CA for trustDomain (e.g. "cluster.local"); it fails t on error.
func NewCA(t testing.TB, trustDomain string) *CA {
	t.Helper()
	td, err := spiffeid.TrustDomainFromString(trustDomain)
	if err != nil {
		t.Fatalf("meshtest: trust domain %q: %v", trustDomain, err)
	}
	dir := t.TempDir()
	a := catest.NewAuthority(t, ca.Config{DataDir: dir, TrustDomain: td})
	keyPEM, err := os.ReadFile(filepath.Join(dir, ca.SelfSignedKeyFile))
	if err != nil {
		t.Fatalf("meshtest: root key: %v", err)
	}
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		t.Fatal("meshtest: root key: no PEM block")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		if key, err = x509.ParseECPrivateKey(block.Bytes); err != nil {
			t.Fatalf("meshtest: root key: %v", err)
		}
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		t.Fatalf("meshtest: root key %T is no signer", key)
	}
	root := a.SigningCertificate()
	c := &CA{TrustDomain: trustDomain, Cert: root, Authority: a, key: signer}
	c.serial.Store(1 << 40) // apart from the authority's random serials
	return c
}

// Pool returns a pool holding the CA's root.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// Issue returns the certificate the mesh CA issues for
// spiffe://TRUSTDOMAIN/ns/NS/sa/SA, valid for ttl, usable as client and
// server.
func (ca *CA) Issue(t testing.TB, ns, sa string, ttl time.Duration) tls.Certificate {
	t.Helper()
	return ca.IssueURI(t, "spiffe://"+ca.TrustDomain+"/ns/"+ns+"/sa/"+sa, ttl)
}

// IssueURI returns a leaf certificate with the URI SAN uri (empty: none):
// issued by the mesh CA when uri is an identity of its trust domain and
// ttl one it issues, else signed by hand with the root's key.
func (ca *CA) IssueURI(t testing.TB, uri string, ttl time.Duration) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("meshtest: leaf key: %v", err)
	}
	if id, err := spiffeid.FromString(uri); err == nil && id.TrustDomain().Name() == ca.TrustDomain && ttl > 0 {
		return ca.issueReal(t, id, key, ttl)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(ca.serial.Add(1)),
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(ttl),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if uri != "" {
		u, err := url.Parse(uri)
		if err != nil {
			t.Fatalf("meshtest: URI %q: %v", uri, err)
		}
		tmpl.URIs = []*url.URL{u}
	}
	return ca.sign(t, tmpl, key)
}

// issueReal has the mesh CA issue id's certificate from a CSR of key.
func (ca *CA) issueReal(t testing.TB, id spiffeid.ID, key *ecdsa.PrivateKey, ttl time.Duration) tls.Certificate {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{id.URL()}}, key)
	if err != nil {
		t.Fatalf("meshtest: CSR: %v", err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatalf("meshtest: CSR: %v", err)
	}
	is, err := ca.Authority.Issue(csr, id, ttl)
	if err != nil {
		t.Fatalf("meshtest: issue %s: %v", id, err)
	}
	out := tls.Certificate{Certificate: [][]byte{is.Chain[0].Raw}, PrivateKey: key, Leaf: is.Chain[0]}
	for _, c := range is.Intermediates() {
		out.Certificate = append(out.Certificate, c.Raw)
	}
	return out
}

// IssueServer returns a serving certificate for localhost and 127.0.0.1.
func (ca *CA) IssueServer(t testing.TB) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("meshtest: server key: %v", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(ca.serial.Add(1)),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	return ca.sign(t, tmpl, key)
}

func (ca *CA) sign(t testing.TB, tmpl *x509.Certificate, key crypto.Signer) tls.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.key)
	if err != nil {
		t.Fatalf("meshtest: sign: %v", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("meshtest: parse: %v", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// ServerTLS returns a server configuration like the control plane's: a
// serving certificate from the CA, and client certificates verified against
// the CA when given (tls.VerifyClientCertIfGiven).
func (ca *CA) ServerTLS(t testing.TB) *tls.Config {
	t.Helper()
	cert := ca.IssueServer(t)
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    ca.Pool(),
		MinVersion:   tls.VersionTLS12,
	}
}

// ClientTLS returns a client configuration that trusts the CA and presents
// the certificate get returns at each handshake (nil get: no certificate).
func (ca *CA) ClientTLS(get func() *tls.Certificate) *tls.Config {
	cfg := &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost", MinVersion: tls.VersionTLS12}
	if get != nil {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return get(), nil }
	}
	return cfg
}
