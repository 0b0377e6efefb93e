package kubesource_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/zmesh/zmesh/internal/config/kubesource"
	"github.com/zmesh/zmesh/internal/meshtest"
	"github.com/zmesh/zmesh/internal/xds"
)

func TestParseCredential(t *testing.T) {
	ca := meshtest.NewCA(t, "web.test")
	chain, key := meshtest.PEM(t, ca.IssueLeaf(t, "web", "web.example.test"))
	_, otherKey := meshtest.PEM(t, ca.IssueLeaf(t, "other"))
	root := ca.RootPEM()
	list := testCRL(t)
	tests := []struct {
		name     string
		data     map[string][]byte
		use      xds.CredentialUse
		wantErr  string
		wantCert bool
		wantCA   bool
		wantCRL  bool
	}{
		{name: "kubernetes.io/tls with ca.crt and ca.crl", data: map[string][]byte{"tls.crt": chain, "tls.key": key, "ca.crt": root, "ca.crl": list}, wantCert: true, wantCA: true, wantCRL: true},
		{name: "generic with cacert and crl", data: map[string][]byte{"cert": chain, "key": key, "cacert": root, "crl": list}, wantCert: true, wantCA: true, wantCRL: true},
		{name: "NAME-cacert with a crl", data: map[string][]byte{"cacert": root, "crl": list}, use: xds.CACredential, wantCA: true, wantCRL: true},
		{name: "a CRL that is no CRL", data: map[string][]byte{"tls.crt": chain, "tls.key": key, "ca.crt": root, "ca.crl": []byte("junk")}, wantErr: "its CRL"},
		{name: "a CRL without a CA", data: map[string][]byte{"tls.crt": chain, "tls.key": key, "ca.crl": list}, wantErr: "without CA certificates"},
		{name: "a client credential keeps its CRL (a server may share its name)", data: map[string][]byte{"ca.crt": root, "ca.crl": list}, use: xds.ClientCredential, wantCA: true, wantCRL: true},
		{name: "kubernetes.io/tls", data: map[string][]byte{"tls.crt": chain, "tls.key": key}, wantCert: true},
		{name: "kubernetes.io/tls with ca.crt", data: map[string][]byte{"tls.crt": chain, "tls.key": key, "ca.crt": root}, wantCert: true, wantCA: true},
		{name: "generic", data: map[string][]byte{"cert": chain, "key": key, "cacert": root}, wantCert: true, wantCA: true},
		{name: "NAME-cacert with cacert", data: map[string][]byte{"cacert": root}, use: xds.CACredential, wantCA: true},
		{name: "NAME-cacert with ca.crt, its key pair ignored", data: map[string][]byte{"ca.crt": root, "tls.crt": chain, "tls.key": otherKey}, use: xds.CACredential, wantCA: true},
		{name: "NAME-cacert without a CA", data: map[string][]byte{"tls.crt": chain}, use: xds.CACredential, wantErr: "no CA certificates"},
		{name: "empty", data: nil, wantErr: "found none"},
		{name: "certificate without key", data: map[string][]byte{"tls.crt": chain}, wantErr: "no certificate and key"},
		{name: "key of another certificate", data: map[string][]byte{"tls.crt": chain, "tls.key": otherKey}, wantErr: "certificate and key"},
		{name: "not PEM", data: map[string][]byte{"tls.crt": []byte("junk"), "tls.key": []byte("junk")}, wantErr: "certificate and key"},
		{name: "a CA that is no certificate", data: map[string][]byte{"tls.crt": chain, "tls.key": key, "ca.crt": []byte("junk")}, wantErr: "hold no PEM certificate"},
		{name: "a DestinationRule's CA alone", data: map[string][]byte{"ca.crt": root}, use: xds.ClientCredential, wantCA: true},
		{name: "a DestinationRule's client pair alone", data: map[string][]byte{"cert": chain, "key": key}, use: xds.ClientCredential, wantCert: true},
		{name: "a DestinationRule's Secret with neither", data: map[string][]byte{"other": root}, use: xds.ClientCredential, wantErr: "no certificate and key"},
		{name: "a server Secret with a CA alone", data: map[string][]byte{"ca.crt": root}, wantErr: "no certificate and key"},
		{name: "too large", data: map[string][]byte{"tls.crt": chain, "tls.key": key, "pad": make([]byte, 300<<10)}, wantErr: "bytes of data"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := kubesource.ParseCredential("istio-system", "web", tt.data, tt.use)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if len(c.PrivateKey) > 0 {
					t.Error("a refused credential still carries a key")
				}
				if strings.Contains(err.Error(), "PRIVATE KEY") {
					t.Error("the error shows key material")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (len(c.Cert) > 0 && len(c.PrivateKey) > 0) != tt.wantCert || (len(c.CA) > 0) != tt.wantCA || (len(c.CRL) > 0) != tt.wantCRL {
				t.Errorf("cert %v ca %v crl %v, want cert %v ca %v crl %v", len(c.Cert) > 0, len(c.CA) > 0, len(c.CRL) > 0, tt.wantCert, tt.wantCA, tt.wantCRL)
			}
			if c.Key() != "istio-system/web" {
				t.Errorf("key %s", c.Key())
			}
		})
	}
}

// testCRL is an empty CRL (PEM) of a throwaway CA.
func testCRL(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "crl test"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	issuer, _ := x509.ParseCertificate(der)
	list, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: time.Now(), NextUpdate: time.Now().Add(time.Hour)}, issuer, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: list})
}

// FuzzParseCredential: any Secret content is parsed or refused, never a
// panic, and an accepted one has a key pair or (caOnly) a CA.
func FuzzParseCredential(f *testing.F) {
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"), []byte("k"), []byte(""), false)
	f.Add([]byte(""), []byte(""), []byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"), true)
	f.Fuzz(func(t *testing.T, crt, key, ca []byte, caOnly bool) {
		use := xds.ServerCredential
		if caOnly {
			use = xds.CACredential
		}
		c, err := kubesource.ParseCredential("ns", "n", map[string][]byte{"tls.crt": crt, "tls.key": key, "ca.crt": ca}, use)
		if err != nil {
			return
		}
		if caOnly && len(c.CA) == 0 || !caOnly && (len(c.Cert) == 0 || len(c.PrivateKey) == 0) {
			t.Fatalf("accepted an incomplete credential: %+v", c.Key())
		}
	})
}
