package meshtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// IssueLeaf returns a certificate with common name cn and the DNS names
// dns, usable as client and server.
func (ca *CA) IssueLeaf(t testing.TB, cn string, dns ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("meshtest: leaf key: %v", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(ca.serial.Add(1)),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     dns,
	}
	return ca.sign(t, tmpl, key)
}

// WriteRoot writes the CA's root as PEM to dir/name and returns the path.
func (ca *CA) WriteRoot(t testing.TB, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// WriteCert writes cert's chain and key as PEM files dir/name.crt and
// dir/name.key (0600) and returns their paths.
func WriteCert(t testing.TB, cert tls.Certificate, dir, name string) (certFile, keyFile string) {
	t.Helper()
	var chain []byte
	for _, der := range cert.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	der, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, chain, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TLSServer is an HTTPS server on loopback with a CA of its own: a host
// outside the mesh, for TLS origination tests. Each response says what
// the server saw of the TLS connection, one "key=value" a line:
//
//	sni=NAME
//	client=COMMON NAME of the client certificate, or "none"
//	path=/REQUEST/URI
//
// It asks for a client certificate and verifies it, when one is given,
// against the same CA (IssueLeaf makes one).
type TLSServer struct {
	*httptest.Server
	CA *CA
	// Addr is host:port of the listener.
	Addr string
}

// NewTLSServer starts a TLSServer serving a certificate for the DNS names
// dns until the test ends.
func NewTLSServer(t testing.TB, dns ...string) *TLSServer {
	t.Helper()
	ca := NewCA(t, "external.test")
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		client := "none"
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			client = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		sni := ""
		if r.TLS != nil {
			sni = r.TLS.ServerName
		}
		fmt.Fprintf(w, "sni=%s\nclient=%s\npath=%s\n", sni, client, r.URL.RequestURI())
	}))
	srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{ca.IssueLeaf(t, "server", dns...)},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    ca.Pool(),
		MinVersion:   tls.VersionTLS12,
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return &TLSServer{Server: srv, CA: ca, Addr: srv.Listener.Addr().(*net.TCPAddr).String()}
}
