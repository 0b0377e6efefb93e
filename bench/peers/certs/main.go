// Command certs writes the throwaway certificates of bench/latency.sh's
// peer cases when openssl is not installed: an ECDSA P-256 CA, a server
// certificate for -server-name (server.bench.svc.cluster.local) and a
// client certificate for -client-name (client.bench, its common name),
// each valid for a day and signed by that CA.
//
// It writes, into -dir:
//
//	ca.pem      the CA certificate (the peers' trust anchor)
//	server.pem  the server certificate followed by its PKCS #8 key
//	client.pem  the client certificate followed by its PKCS #8 key
//
// The CA's key is never written: nothing else is signed with it.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// The names latency.sh configures the peers with, by default.
var (
	serverName = "server.bench.svc.cluster.local"
	clientName = "client.bench"
)

func main() {
	dir := flag.String("dir", "", "directory to write ca.pem, server.pem and client.pem into")
	flag.StringVar(&serverName, "server-name", serverName, "DNS name (and common name) of the server certificate")
	flag.StringVar(&clientName, "client-name", clientName, "common name of the client certificate")
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "certs: -dir is required")
		os.Exit(2)
	}
	if err := write(*dir, time.Now()); err != nil {
		fmt.Fprintln(os.Stderr, "certs:", err)
		os.Exit(1)
	}
}

// write writes the CA and the two leaf certificates, valid from an hour
// before now for a day.
func write(dir string, now time.Time) error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	caTmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "zmesh bench throwaway CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, ca, err := sign(caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	if err := writePEM(filepath.Join(dir, "ca.pem"), caDER, nil); err != nil {
		return err
	}
	leaves := []struct {
		file string
		tmpl *x509.Certificate
	}{
		{"server.pem", &x509.Certificate{
			Subject:     pkix.Name{CommonName: serverName},
			DNSNames:    []string{serverName},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}},
		{"client.pem", &x509.Certificate{
			Subject:     pkix.Name{CommonName: clientName},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}},
	}
	for _, l := range leaves {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		l.tmpl.NotBefore, l.tmpl.NotAfter = caTmpl.NotBefore, caTmpl.NotAfter
		l.tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		der, _, err := sign(l.tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return err
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return err
		}
		if err := writePEM(filepath.Join(dir, l.file), der, keyDER); err != nil {
			return err
		}
	}
	return nil
}

// sign gives tmpl a random serial number and signs it with the parent's
// key.
func sign(tmpl, parent *x509.Certificate, pub *ecdsa.PublicKey, signer *ecdsa.PrivateKey) ([]byte, *x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	tmpl.SerialNumber = serial
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return der, cert, err
}

// writePEM writes a certificate, followed by its key unless keyDER is
// nil, readable by the owner only.
func writePEM(path string, certDER, keyDER []byte) error {
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certDER})
	if keyDER != nil {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})...)
	}
	return os.WriteFile(path, b, 0o600)
}
