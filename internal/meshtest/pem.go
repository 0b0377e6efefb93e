package meshtest

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"testing"
)

// PEM returns cert's chain and its PKCS #8 key as PEM, the content of a
// Kubernetes TLS Secret's tls.crt and tls.key.
func PEM(t testing.TB, cert tls.Certificate) (chain, key []byte) {
	t.Helper()
	for _, der := range cert.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	der, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	return chain, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// RootPEM is the CA's root certificate as PEM.
func (ca *CA) RootPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}
