package ca_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/zmesh/zmesh/internal/ca"
	"github.com/zmesh/zmesh/internal/ca/catest"
)

func TestSignIgnoresNamesInCSR(t *testing.T) {
	a := catest.NewAuthority(t, ca.Config{})
	key := catest.NewKey(t)
	admin, _ := url.Parse("spiffe://cluster.local/ns/istio-system/sa/admin")
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:        pkix.Name{CommonName: "admin", Organization: []string{"system:masters"}},
		DNSNames:       []string{"istiod.istio-system.svc"},
		IPAddresses:    []net.IP{net.ParseIP("10.0.0.1")},
		EmailAddresses: []string{"root@example.com"},
		URIs:           []*url.URL{admin},
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	chain, err := a.Sign(csr, workload, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	leaf := chain[0]
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != workload.String() {
		t.Errorf("URIs = %v, want only %s", leaf.URIs, workload)
	}
	if len(leaf.DNSNames)+len(leaf.IPAddresses)+len(leaf.EmailAddresses) != 0 {
		t.Errorf("leaf carries names from the CSR: %v %v %v", leaf.DNSNames, leaf.IPAddresses, leaf.EmailAddresses)
	}
	if leaf.Subject.CommonName != "" || len(leaf.Subject.Organization) != 0 {
		t.Errorf("leaf subject %q comes from the CSR", leaf.Subject)
	}
	if !publicKeyEqual(leaf.PublicKey, key.Public()) {
		t.Error("leaf key is not the CSR's key")
	}
	verifyChain(t, a, chain, workload)
}

func TestSignLeafProfile(t *testing.T) {
	a := catest.NewAuthority(t, ca.Config{})
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	tests := []struct {
		name      string
		key       crypto.Signer
		wantUsage x509.KeyUsage
	}{
		{name: "ECDSA P-256 gets digital signature", key: catest.NewKey(t), wantUsage: x509.KeyUsageDigitalSignature},
		{name: "ECDSA P-384 gets digital signature", key: p384, wantUsage: x509.KeyUsageDigitalSignature},
		{name: "RSA adds key encipherment", key: rsaKey, wantUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			chain, err := a.Sign(parseCSR(t, catest.CSR(t, tt.key)), workload, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			leaf := chain[0]
			if leaf.IsCA || !leaf.BasicConstraintsValid {
				t.Error("leaf must carry basic constraints CA:FALSE")
			}
			if leaf.KeyUsage != tt.wantUsage {
				t.Errorf("KeyUsage = %b, want %b", leaf.KeyUsage, tt.wantUsage)
			}
			wantEKU := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
			if len(leaf.ExtKeyUsage) != 2 || leaf.ExtKeyUsage[0] != wantEKU[0] || leaf.ExtKeyUsage[1] != wantEKU[1] {
				t.Errorf("ExtKeyUsage = %v, want server and client auth", leaf.ExtKeyUsage)
			}
			if bits := leaf.SerialNumber.BitLen(); bits > 128 || bits < 64 {
				t.Errorf("serial has %d bits, want a random 128-bit number", bits)
			}
			if seen[leaf.SerialNumber.String()] {
				t.Error("serial repeated")
			}
			seen[leaf.SerialNumber.String()] = true
			verifyChain(t, a, chain, workload)
		})
	}
}

func TestSignLifetime(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	clock := func() time.Time { return now }
	// The root is created at "now" too, so it outlives every leaf here.
	a := catest.NewAuthority(t, ca.Config{DefaultTTL: 2 * time.Hour, MaxTTL: 10 * time.Hour, Clock: clock})
	tests := []struct {
		name    string
		ttl     time.Duration
		want    time.Duration
		wantErr bool
	}{
		{name: "zero means the default", ttl: 0, want: 2 * time.Hour},
		{name: "requested lifetime is kept", ttl: 5 * time.Hour, want: 5 * time.Hour},
		{name: "short lifetimes for rotation tests", ttl: 2 * time.Second, want: 2 * time.Second},
		{name: "over the max is capped", ttl: 100 * time.Hour, want: 10 * time.Hour},
		{name: "negative is an error", ttl: -time.Second, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			chain, err := a.Sign(parseCSR(t, catest.CSR(t, catest.NewKey(t))), workload, tt.ttl)
			if tt.wantErr {
				if err == nil {
					t.Fatal("want error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			leaf := chain[0]
			if !leaf.NotAfter.Equal(now.Add(tt.want)) {
				t.Errorf("NotAfter = %s, want now+%s", leaf.NotAfter, tt.want)
			}
			// Backdated a tenth of the lifetime, at most 10 minutes, for
			// clock skew between the CA and the peers.
			if want := now.Add(-min(tt.want/10, 10*time.Minute)); !leaf.NotBefore.Equal(want.Truncate(time.Second)) && !leaf.NotBefore.Equal(want) {
				t.Errorf("NotBefore = %s, want %s", leaf.NotBefore, want)
			}
		})
	}
}

func TestSignCappedByCAExpiry(t *testing.T) {
	root := newTestCA(t, "root", nil, caOpts{})
	inter := newTestCA(t, "inter", root, caOpts{notAfter: time.Now().Add(3 * time.Hour)})
	dir := t.TempDir()
	writeCACerts(t, dir, inter, []*x509.Certificate{inter.cert, root.cert}, root)
	a := catest.NewAuthority(t, ca.Config{DataDir: dir})
	chain, err := a.Sign(parseCSR(t, catest.CSR(t, catest.NewKey(t))), workload, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if chain[0].NotAfter.After(inter.cert.NotAfter) {
		t.Errorf("leaf outlives its CA: %s > %s", chain[0].NotAfter, inter.cert.NotAfter)
	}
}

func TestSignRefuses(t *testing.T) {
	a := catest.NewAuthority(t, ca.Config{})
	good := parseCSR(t, catest.CSR(t, catest.NewKey(t)))
	tampered := parseCSR(t, catest.CSR(t, catest.NewKey(t)))
	tampered.Signature = append([]byte(nil), tampered.Signature...)
	tampered.Signature[len(tampered.Signature)-3] ^= 0xff
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)

	tests := []struct {
		name       string
		csr        *x509.CertificateRequest
		id         spiffeid.ID
		invalidCSR bool
	}{
		{name: "nil CSR", csr: nil, id: workload, invalidCSR: true},
		{name: "bad signature", csr: tampered, id: workload, invalidCSR: true},
		{name: "CA:TRUE request", csr: parseCSR(t, caCSR(t, true)), id: workload, invalidCSR: true},
		{name: "Ed25519 key", csr: parseCSR(t, catest.CSR(t, edKey)), id: workload, invalidCSR: true},
		{name: "P-224 key", csr: parseCSR(t, catest.CSR(t, p224)), id: workload, invalidCSR: true},
		{name: "zero identity", csr: good, id: spiffeid.ID{}},
		{name: "other trust domain", csr: good, id: spiffeid.RequireFromString("spiffe://example.org/ns/foo/sa/bar")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := a.Sign(tt.csr, tt.id, time.Hour)
			if err == nil {
				t.Fatal("Sign succeeded, want error")
			}
			if got := errors.Is(err, ca.ErrInvalidCSR); got != tt.invalidCSR {
				t.Fatalf("errors.Is(%v, ErrInvalidCSR) = %v, want %v", err, got, tt.invalidCSR)
			}
		})
	}
	// CA:FALSE stated explicitly is fine.
	if _, err := a.Sign(parseCSR(t, caCSR(t, false)), workload, time.Hour); err != nil {
		t.Fatalf("CA:FALSE request: %v", err)
	}
}

func TestParseCSR(t *testing.T) {
	valid := catest.CSR(t, catest.NewKey(t))
	tests := []struct {
		name string
		in   []byte
		ok   bool
	}{
		{name: "valid", in: valid, ok: true},
		{name: "trailing newline is fine", in: append(append([]byte(nil), valid...), '\n'), ok: true},
		{name: "empty", in: nil},
		{name: "not PEM", in: []byte("hello")},
		{name: "certificate instead of request", in: []byte(strings.Replace(string(valid), "CERTIFICATE REQUEST", "CERTIFICATE", 2))},
		{name: "two requests", in: append(append([]byte(nil), valid...), valid...)},
		{name: "garbage DER", in: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte{0x30, 0x03, 1, 2, 3}})},
		{name: "CA request", in: caCSR(t, true)},
		{name: "oversized", in: append(append([]byte(nil), valid...), make([]byte, ca.MaxCSRSize)...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			csr, err := ca.ParseCSR(tt.in)
			if tt.ok {
				if err != nil || csr == nil {
					t.Fatalf("ParseCSR: %v", err)
				}
				return
			}
			if !errors.Is(err, ca.ErrInvalidCSR) {
				t.Fatalf("ParseCSR err = %v, want ErrInvalidCSR", err)
			}
		})
	}
}

func FuzzParseCSR(f *testing.F) {
	f.Add(catest.CSR(f, catest.NewKey(f)))
	f.Add(catest.CSR(f, catest.NewKey(f), "spiffe://cluster.local/ns/a/sa/b"))
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		csr, err := ca.ParseCSR(data)
		if err != nil {
			if !errors.Is(err, ca.ErrInvalidCSR) {
				t.Fatalf("error %v does not wrap ErrInvalidCSR", err)
			}
			return
		}
		if csr.CheckSignature() != nil {
			t.Fatal("ParseCSR accepted a CSR whose signature does not verify")
		}
	})
}

// caCSR returns a CSR with a basic constraints extension CA:isCA.
func caCSR(t *testing.T, isCA bool) []byte {
	t.Helper()
	val, err := asn1.Marshal(struct {
		IsCA bool `asn1:"optional"`
	}{isCA})
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: val}},
	}, catest.NewKey(t))
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func publicKeyEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}
