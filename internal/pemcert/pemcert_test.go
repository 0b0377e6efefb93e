package pemcert_test

import (
	"crypto"
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

	"github.com/zmesh/zmesh/internal/pemcert"
)

// newCert returns a certificate for name signed by parent's key, or
// self-signed when parent is nil, and its key.
func newCert(t testing.TB, name string, parent *x509.Certificate, parentKey crypto.Signer) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  parent == nil,
		BasicConstraintsValid: true,
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

func keyPEM(t testing.TB, k crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// badCert is a CERTIFICATE block whose body is no certificate.
var badCert = []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// strictMax is the bound the table gives ParseStrict.
const strictMax = 2

func TestParse(t *testing.T) {
	root, rootKey := newCert(t, "root", nil, nil)
	leaf, leafKey := newCert(t, "leaf", root, rootKey)
	other, _ := newCert(t, "other", nil, nil)
	key := keyPEM(t, leafKey)

	tests := []struct {
		name string
		in   []byte
		// want is what both modes return; wantErr and strictErr, when set,
		// are what the lenient and the strict mode fail with instead.
		want      []*x509.Certificate
		wantErr   string
		strictErr string
	}{
		{name: "one certificate", in: pemcert.Encode(root), want: []*x509.Certificate{root}},
		{name: "chain of max certificates keeps its order", in: pemcert.Encode(leaf, root), want: []*x509.Certificate{leaf, root}},
		{name: "trailing whitespace", in: cat(pemcert.Encode(root), []byte("\n \t\r\n")), want: []*x509.Certificate{root}},
		{name: "text before a block is passed over", in: cat([]byte("subject=root\n"), pemcert.Encode(root)), want: []*x509.Certificate{root}},
		{
			name: "key beside the certificate is skipped, and strict rejects it",
			in:   cat(key, pemcert.Encode(leaf)), want: []*x509.Certificate{leaf},
			strictErr: `unexpected PEM block "PRIVATE KEY"`,
		},
		{
			name: "key after the certificate is skipped, and strict rejects it",
			in:   cat(pemcert.Encode(leaf), key), want: []*x509.Certificate{leaf},
			strictErr: `unexpected PEM block "PRIVATE KEY"`,
		},
		{
			name: "key only", in: key,
			wantErr: "no PEM certificate found", strictErr: `unexpected PEM block "PRIVATE KEY"`,
		},
		{
			name: "trailing garbage is lenient only",
			in:   cat(pemcert.Encode(root), []byte("garbage")), want: []*x509.Certificate{root},
			strictErr: "not PEM certificates",
		},
		{
			name: "more than max is lenient only",
			in:   pemcert.Encode(leaf, root, other), want: []*x509.Certificate{leaf, root, other},
			strictErr: "more than 2 certificates",
		},
		{name: "empty", in: nil, wantErr: "no PEM certificate found", strictErr: "not PEM certificates"},
		{name: "whitespace", in: []byte("\n\n"), wantErr: "no PEM certificate found", strictErr: "not PEM certificates"},
		{name: "garbage", in: []byte("garbage"), wantErr: "no PEM certificate found", strictErr: "not PEM certificates"},
		{name: "bad first certificate", in: badCert, wantErr: "certificate 1: ", strictErr: "certificate 1: "},
		{name: "bad second certificate", in: cat(pemcert.Encode(root), badCert), wantErr: "certificate 2: ", strictErr: "certificate 2: "},
		{
			name: "bad certificate after a skipped key is still counted from 1",
			in:   cat(key, badCert), wantErr: "certificate 1: ", strictErr: `unexpected PEM block "PRIVATE KEY"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := pemcert.Parse(tt.in)
			check(t, "Parse", got, err, tt.want, tt.wantErr, string(key))
			strictWant, strictErr := tt.want, tt.strictErr
			if tt.wantErr != "" && strictErr == "" {
				strictErr = tt.wantErr
			}
			got, err = pemcert.ParseStrict(tt.in, strictMax)
			check(t, "ParseStrict", got, err, strictWant, strictErr, string(key))
		})
	}
}

// check compares a parse result with the certificates or the error wanted,
// and that an error never quotes the key.
func check(t *testing.T, fn string, got []*x509.Certificate, err error, want []*x509.Certificate, wantErr, key string) {
	t.Helper()
	if wantErr != "" {
		if err == nil || !strings.HasPrefix(err.Error(), wantErr) {
			t.Fatalf("%s error = %v, want one starting %q", fn, err, wantErr)
		}
		body := strings.Split(key, "\n")[1] // the first base64 line of the key
		if strings.Contains(err.Error(), body) {
			t.Fatalf("%s error quotes the private key: %v", fn, err)
		}
		return
	}
	if err != nil {
		t.Fatalf("%s: %v", fn, err)
	}
	if !equal(got, want) {
		t.Fatalf("%s returned %d certificates, not the %d wanted in order", fn, len(got), len(want))
	}
}

func equal(a, b []*x509.Certificate) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Equal(b[i]) {
			return false
		}
	}
	return true
}

func TestParseStrictBound(t *testing.T) {
	root, _ := newCert(t, "root", nil, nil)
	tests := []struct {
		name string
		n    int
		max  int
		ok   bool
	}{
		{name: "below max", n: 1, max: 3, ok: true},
		{name: "at max", n: 3, max: 3, ok: true},
		{name: "one past max", n: 4, max: 3},
		{name: "zero max accepts nothing", n: 1, max: 0},
		{name: "negative max accepts nothing", n: 1, max: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			certs := make([]*x509.Certificate, tt.n)
			for i := range certs {
				certs[i] = root
			}
			got, err := pemcert.ParseStrict(pemcert.Encode(certs...), tt.max)
			if tt.ok != (err == nil) {
				t.Fatalf("ParseStrict(%d certificates, %d) = %d, %v", tt.n, tt.max, len(got), err)
			}
		})
	}
}

func TestEncode(t *testing.T) {
	root, rootKey := newCert(t, "root", nil, nil)
	leaf, _ := newCert(t, "leaf", root, rootKey)
	if got := pemcert.Encode(); len(got) != 0 {
		t.Errorf("Encode() = %q, want nothing", got)
	}
	out := pemcert.Encode(leaf, root)
	if n := strings.Count(string(out), "-----BEGIN CERTIFICATE-----\n"); n != 2 {
		t.Errorf("Encode wrote %d CERTIFICATE blocks, want 2:\n%s", n, out)
	}
	for _, parse := range []func([]byte) ([]*x509.Certificate, error){
		pemcert.Parse,
		func(b []byte) ([]*x509.Certificate, error) { return pemcert.ParseStrict(b, 2) },
	} {
		got, err := parse(out)
		if err != nil || !equal(got, []*x509.Certificate{leaf, root}) {
			t.Errorf("round trip = %d certificates, %v; want leaf, root", len(got), err)
		}
	}
}
