package main

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestWrite checks that the written certificates are what the peers'
// mutual TLS needs: both leaves chain to ca.pem, the server's for its
// name and server auth, the client's for client auth, and each file's
// key matches its certificate.
func TestWrite(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	if err := write(dir, now); err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatal("ca.pem holds no certificate")
	}
	for _, c := range []struct {
		file, dnsName string
		usage         x509.ExtKeyUsage
	}{
		{"server.pem", serverName, x509.ExtKeyUsageServerAuth},
		{"client.pem", "", x509.ExtKeyUsageClientAuth},
	} {
		path := filepath.Join(dir, c.file)
		pair, err := tls.LoadX509KeyPair(path, path)
		if err != nil {
			t.Fatalf("%s: %v", c.file, err)
		}
		if _, err := pair.Leaf.Verify(x509.VerifyOptions{
			DNSName:     c.dnsName,
			Roots:       roots,
			CurrentTime: now,
			KeyUsages:   []x509.ExtKeyUsage{c.usage},
		}); err != nil {
			t.Errorf("%s: %v", c.file, err)
		}
		if _, err := pair.Leaf.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now.Add(25 * time.Hour)}); err == nil {
			t.Errorf("%s still valid after 25 hours", c.file)
		}
	}
	path := filepath.Join(dir, "client.pem")
	pair, _ := tls.LoadX509KeyPair(path, path)
	if got := pair.Leaf.Subject.CommonName; got != clientName {
		t.Errorf("client CN = %q, want %q", got, clientName)
	}
}
