package ca

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"net"
	"net/url"
	"reflect"
	"testing"
)

// requestSeeds are requests as agents and tools write them, and near
// misses.
func requestSeeds(t testing.TB) map[string][]byte {
	keys := leafKeys()
	spiffe, _ := url.Parse("spiffe://cluster.local/ns/default/sa/web")
	other, _ := url.Parse("https://example.com/x")
	bc, _ := asn1.Marshal(struct {
		IsCA bool `asn1:"optional"`
	}{true})
	mk := func(key crypto.Signer, tmpl *x509.CertificateRequest) []byte {
		der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	return map[string][]byte{
		"zmesh agent: SPIFFE URI, empty subject": mk(keys["P-256"], &x509.CertificateRequest{URIs: []*url.URL{spiffe}}),
		"bench: subject, no names":               mk(keys["P-256"], &x509.CertificateRequest{Subject: pkix.Name{Organization: []string{"bench"}}}),
		"P-384 key":                              mk(keys["P-384"], &x509.CertificateRequest{URIs: []*url.URL{spiffe}}),
		"RSA key":                                mk(keys["RSA-2048"], &x509.CertificateRequest{URIs: []*url.URL{spiffe}}),
		"RSA-PSS signature":                      mk(keys["RSA-2048"], &x509.CertificateRequest{SignatureAlgorithm: x509.SHA256WithRSAPSS}),
		"Ed25519 key":                            mk(keys["Ed25519"], &x509.CertificateRequest{}),
		"two URIs":                               mk(keys["P-256"], &x509.CertificateRequest{URIs: []*url.URL{spiffe, other}}),
		"DNS name and IP":                        mk(keys["P-256"], &x509.CertificateRequest{DNSNames: []string{"a.example"}, IPAddresses: []net.IP{net.IPv4(10, 0, 0, 1)}}),
		"CA:TRUE requested":                      mk(keys["P-256"], &x509.CertificateRequest{ExtraExtensions: []pkix.Extension{{Id: oidBasicConstraints, Critical: true, Value: bc}}}),
		"full subject":                           mk(keys["P-256"], &x509.CertificateRequest{Subject: pkix.Name{CommonName: "web", Country: []string{"CH"}, OrganizationalUnit: []string{"a", "b"}}}),
		"no attributes":                          mk(keys["P-256"], &x509.CertificateRequest{}),
	}
}

// TestParseCommonRequest: the requests agents send take the fast path,
// and it reads them exactly as x509 does; the others are left to x509.
func TestParseCommonRequest(t *testing.T) {
	fast := map[string]bool{
		"zmesh agent: SPIFFE URI, empty subject": true,
		"bench: subject, no names":               true,
		"P-384 key":                              true,
		"RSA key":                                true,
		"two URIs":                               true,
		"CA:TRUE requested":                      true,
		"full subject":                           true,
		"no attributes":                          true,
	}
	for name, der := range requestSeeds(t) {
		t.Run(name, func(t *testing.T) {
			got, ok := parseCommonRequest(der)
			if ok != fast[name] {
				t.Fatalf("fast path taken = %v, want %v", ok, fast[name])
			}
			want, err := x509.ParseCertificateRequest(der)
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				compareRequests(t, got, want)
				if err := got.CheckSignature(); err != nil {
					t.Errorf("signature of the fast path's request: %v", err)
				}
			}
			viaParse, err := parseRequest(der)
			if err != nil {
				t.Fatal(err)
			}
			compareRequests(t, viaParse, want)
		})
	}
}

// compareRequests fails unless got reads as want in every field but the
// deprecated Attributes.
func compareRequests(t *testing.T, got, want *x509.CertificateRequest) {
	t.Helper()
	uriStrings := func(us []*url.URL) (out []string) {
		for _, u := range us {
			out = append(out, u.String())
		}
		return out
	}
	extsEqual := func(a, b []pkix.Extension) bool {
		if len(a) != len(b) {
			return false
		}
		for i := range a {
			if !a[i].Id.Equal(b[i].Id) || a[i].Critical != b[i].Critical || string(a[i].Value) != string(b[i].Value) {
				return false
			}
		}
		return true
	}
	switch {
	case string(got.Raw) != string(want.Raw), string(got.RawTBSCertificateRequest) != string(want.RawTBSCertificateRequest),
		string(got.RawSubjectPublicKeyInfo) != string(want.RawSubjectPublicKeyInfo), string(got.RawSubject) != string(want.RawSubject):
		t.Error("raw fields differ")
	case got.Version != want.Version, string(got.Signature) != string(want.Signature),
		got.SignatureAlgorithm != want.SignatureAlgorithm, got.PublicKeyAlgorithm != want.PublicKeyAlgorithm:
		t.Errorf("version, signature or algorithms differ: %v %v %v / %v %v %v", got.Version, got.SignatureAlgorithm, got.PublicKeyAlgorithm,
			want.Version, want.SignatureAlgorithm, want.PublicKeyAlgorithm)
	case !publicKeysEqual(got.PublicKey, want.PublicKey):
		t.Error("public keys differ")
	case got.Subject.String() != want.Subject.String():
		t.Errorf("subject %q, x509 reads %q", got.Subject, want.Subject)
	case !extsEqual(got.Extensions, want.Extensions):
		t.Errorf("extensions %v, x509 reads %v", got.Extensions, want.Extensions)
	case !reflect.DeepEqual(uriStrings(got.URIs), uriStrings(want.URIs)):
		t.Errorf("URIs %v, x509 reads %v", got.URIs, want.URIs)
	case len(got.DNSNames)+len(got.EmailAddresses)+len(got.IPAddresses) != len(want.DNSNames)+len(want.EmailAddresses)+len(want.IPAddresses):
		t.Error("other names differ")
	}
}

// TestParseCommonRequestRefusesWhatX509Refuses: requests whose names x509
// refuses (a URI host with an empty label or a trailing dot, a URI
// that is not ASCII) are not read by the fast path either.
func TestParseCommonRequestRefusesWhatX509Refuses(t *testing.T) {
	key := leafKeys()["P-256"]
	tests := []struct {
		name string
		ext  []byte
	}{
		{"URI host with an empty label", san(t, 6, "spiffe://a..b/ns/x/sa/y")},
		{"URI host with a trailing dot", san(t, 6, "spiffe://cluster.local./ns/x/sa/y")},
		{"URI host with a space", san(t, 6, "spiffe://a b/x")},
		{"URI that is not ASCII", san(t, 6, "spiffe://cluster.local/ns/\xc3\xa9")},
		{"URI that does not parse", san(t, 6, "spiffe://[::1/x")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
				ExtraExtensions: []pkix.Extension{{Id: oidExtSubjectAltName, Value: tt.ext}},
			}, key)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := x509.ParseCertificateRequest(der); err == nil {
				t.Fatal("x509 accepts it: not a case for this test")
			}
			if _, ok := parseCommonRequest(der); ok {
				t.Error("the fast path accepts a request x509 refuses")
			}
			if _, err := parseRequest(der); err == nil {
				t.Error("parseRequest accepts it")
			}
		})
	}
}

// san encodes a subject alternative name extension of one name with the
// given context tag, whatever its content.
func san(t *testing.T, tag int, name string) []byte {
	t.Helper()
	der, err := asn1.Marshal([]asn1.RawValue{{Class: asn1.ClassContextSpecific, Tag: tag, Bytes: []byte(name)}})
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// FuzzParseCommonRequest: whatever the bytes, the fast path accepts only
// what x509.ParseCertificateRequest accepts, and reads it the same way.
func FuzzParseCommonRequest(f *testing.F) {
	for _, der := range requestSeeds(f) {
		f.Add(der)
	}
	f.Fuzz(func(t *testing.T, der []byte) {
		got, ok := parseCommonRequest(der)
		if !ok {
			return
		}
		want, err := x509.ParseCertificateRequest(der)
		if err != nil {
			t.Fatalf("fast path accepts what x509 refuses (%v)", err)
		}
		compareRequests(t, got, want)
	})
}

// BenchmarkParseRequest compares the fast path with x509 on a zmesh
// agent's request.
func BenchmarkParseRequest(b *testing.B) {
	der := requestSeeds(b)["zmesh agent: SPIFFE URI, empty subject"]
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := parseRequest(der); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("x509", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := x509.ParseCertificateRequest(der); err != nil {
				b.Fatal(err)
			}
		}
	})
}
