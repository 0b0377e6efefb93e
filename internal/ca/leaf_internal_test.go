package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// leafKeys are the keys the tests sign with and for, made once: RSA keys
// take a while.
var leafKeys = sync.OnceValue(func() map[string]crypto.Signer {
	must := func(k crypto.Signer, err error) crypto.Signer {
		if err != nil {
			panic(err)
		}
		return k
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return map[string]crypto.Signer{
		"P-256":    must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader)),
		"P-384":    must(ecdsa.GenerateKey(elliptic.P384(), rand.Reader)),
		"P-521":    must(ecdsa.GenerateKey(elliptic.P521(), rand.Reader)),
		"RSA-2048": must(rsa.GenerateKey(rand.Reader, 2048)),
		"Ed25519":  ed,
	}
})

// issuerSpec describes a signing CA for the tests.
type issuerSpec struct {
	key        string
	subject    pkix.Name
	noSKI      bool
	start, end time.Time
}

// newIssuerCert makes a self-signed CA certificate for spec.
func newIssuerCert(t testing.TB, spec issuerSpec) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	key := leafKeys()[spec.key]
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(42),
		Subject:               spec.subject,
		NotBefore:             spec.start,
		NotAfter:              spec.end,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	if spec.noSKI {
		// CreateCertificate makes a key ID for every CA unless given one;
		// a certificate without one comes from elsewhere. Drop it from the
		// parsed copy, which is all the leaf encoder reads.
		tmpl.SubjectKeyId = []byte{1}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if spec.noSKI {
		cert.SubjectKeyId = nil
	}
	return cert, key
}

// stdlibLeaf is the leaf as Issue made it before leaves were encoded by
// hand: x509.CreateCertificate with this template. The encoder must produce
// the same TBSCertificate byte for byte.
func stdlibLeaf(t testing.TB, lt leafTemplate, caCert *x509.Certificate, signer crypto.Signer) (*x509.Certificate, error) {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber:          lt.serial,
		NotBefore:             lt.notBefore,
		NotAfter:              lt.notAfter,
		KeyUsage:              lt.keyUsage(),
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  false,
		URIs:                  []*url.URL{lt.id.URL()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, lt.pub, signer)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

var (
	testStart = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	testEnd   = time.Date(2036, 1, 1, 0, 0, 0, 0, time.UTC)
	testID    = spiffeid.RequireFromString("spiffe://cluster.local/ns/default/sa/web")
)

// TestLeafMatchesCreateCertificate compares the hand-encoded leaf with
// x509.CreateCertificate's for the same template, over every key type a CA
// may sign with, every key type a CSR may carry, and the corners of the
// encoding (serials that need a leading zero, times past 2049, sub-second
// times, CAs without a key ID or without a subject): the TBSCertificate is
// the same bytes, the parsed certificates agree field by field, and the
// leaf verifies against its CA for TLS client and server use.
func TestLeafMatchesCreateCertificate(t *testing.T) {
	keys := leafKeys()
	maxSerial := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 128), big.NewInt(1))
	type tc struct {
		name   string
		issuer issuerSpec
		leaf   leafTemplate
	}
	base := func(name, caKey, leafKey string) tc {
		return tc{
			name:   name,
			issuer: issuerSpec{key: caKey, subject: pkix.Name{CommonName: "Root CA", Organization: []string{"cluster.local"}}, start: testStart, end: testEnd},
			leaf: leafTemplate{serial: big.NewInt(0x7f), notBefore: testStart.Add(time.Hour), notAfter: testStart.Add(2 * time.Hour),
				pub: keys[leafKey].Public(), rawKey: spkiOf(t, keys[leafKey].Public()), id: testID},
		}
	}
	var tests []tc
	for _, caKey := range []string{"P-256", "P-384", "P-521", "RSA-2048", "Ed25519"} {
		for _, leafKey := range []string{"P-256", "P-384", "RSA-2048"} {
			tests = append(tests, base("CA "+caKey+" signs a "+leafKey+" key", caKey, leafKey))
		}
	}
	c := base("128-bit serial with the top bit set gets a leading zero", "P-256", "P-256")
	c.leaf.serial = maxSerial
	tests = append(tests, c)
	c = base("a key without the request's encoding is marshalled", "P-256", "P-256")
	c.leaf.rawKey = nil
	tests = append(tests, c)
	c = base("serial 1", "P-256", "P-256")
	c.leaf.serial = big.NewInt(1)
	tests = append(tests, c)
	c = base("sub-second times are cut to the second", "P-256", "P-256")
	c.leaf.notBefore = c.leaf.notBefore.Add(999 * time.Millisecond)
	c.leaf.notAfter = c.leaf.notAfter.Add(1500 * time.Millisecond)
	tests = append(tests, c)
	c = base("times in another zone are written in UTC", "P-256", "P-256")
	zone := time.FixedZone("UTC+5", 5*3600)
	c.leaf.notBefore, c.leaf.notAfter = c.leaf.notBefore.In(zone), c.leaf.notAfter.In(zone)
	tests = append(tests, c)
	c = base("a leaf ending after 2049 uses GeneralizedTime", "P-256", "P-256")
	c.issuer.end = time.Date(2060, 1, 1, 0, 0, 0, 0, time.UTC)
	c.leaf.notAfter = time.Date(2050, 1, 1, 0, 0, 1, 0, time.UTC)
	tests = append(tests, c)
	c = base("a CA without a key ID gives no authority key ID", "P-256", "P-256")
	c.issuer.noSKI = true
	tests = append(tests, c)
	c = base("a CA without a subject gives no authority key ID", "P-256", "P-256")
	c.issuer.subject = pkix.Name{}
	tests = append(tests, c)
	c = base("a long SPIFFE ID", "P-256", "P-256")
	c.leaf.id = spiffeid.RequireFromString("spiffe://cluster.local/ns/" + strings.Repeat("n", 63) + "/sa/" + strings.Repeat("s", 253))
	tests = append(tests, c)
	c = base("another trust domain", "P-256", "P-256")
	c.leaf.id = spiffeid.RequireFromString("spiffe://example.org/ns/a/sa/b")
	tests = append(tests, c)

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			caCert, signer := newIssuerCert(t, tt.issuer)
			li, err := newLeafIssuer(signer, caCert)
			if err != nil {
				t.Fatal(err)
			}
			want, err := stdlibLeaf(t, tt.leaf, caCert, signer)
			if err != nil {
				t.Fatal(err)
			}
			got, err := li.issue(tt.leaf, lifetimeOf([]*x509.Certificate{caCert}))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.RawTBSCertificate, want.RawTBSCertificate) {
				t.Errorf("TBSCertificate differs from x509.CreateCertificate's:\n got %x\nwant %x", got.RawTBSCertificate, want.RawTBSCertificate)
			}
			compareLeaves(t, got, want)
			roots := x509.NewCertPool()
			roots.AddCert(caCert)
			if _, err := got.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: tt.leaf.notBefore.Add(time.Second),
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}}); err != nil {
				t.Errorf("leaf does not verify against its CA: %v", err)
			}
			if err := got.CheckSignatureFrom(caCert); err != nil {
				t.Errorf("signature: %v", err)
			}
		})
	}
}

func spkiOf(t testing.TB, pub crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestLeafRefusesAnotherEncodedKey: the request's encoding of its key is
// used as is only when it has the one form a P-256 key can take, and the
// leaf is checked to carry the request's key whatever was encoded.
func TestLeafRefusesAnotherEncodedKey(t *testing.T) {
	keys := leafKeys()
	caCert, signer := newIssuerCert(t, issuerSpec{key: "P-256", subject: pkix.Name{CommonName: "Root CA"}, start: testStart, end: testEnd})
	li, err := newLeafIssuer(signer, caCert)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pub := keys["P-256"].Public()
	notOnCurve := spkiOf(t, pub)
	notOnCurve[len(notOnCurve)-1] ^= 1
	tests := []struct {
		name string
		raw  []byte
	}{
		{"another P-256 key's encoding", spkiOf(t, other.Public())},
		{"a point not on the curve", notOnCurve},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lt := leafTemplate{serial: big.NewInt(5), notBefore: testStart.Add(time.Hour), notAfter: testStart.Add(2 * time.Hour), pub: pub, rawKey: tt.raw, id: testID}
			if _, err := li.issue(lt, lifetimeOf([]*x509.Certificate{caCert})); err == nil {
				t.Error("issued a leaf for a key other than the request's")
			}
		})
	}
	// A P-384 key's encoding is not taken as is, whatever it looks like.
	lt := leafTemplate{serial: big.NewInt(5), notBefore: testStart.Add(time.Hour), notAfter: testStart.Add(2 * time.Hour),
		pub: keys["P-384"].Public(), rawKey: spkiOf(t, pub), id: testID}
	if leaf, err := li.issue(lt, lifetimeOf([]*x509.Certificate{caCert})); err != nil || !publicKeysEqual(leaf.PublicKey, keys["P-384"].Public()) {
		t.Errorf("P-384 key with a P-256 encoding beside it: err %v", err)
	}
}

// compareLeaves compares what a TLS peer or policy reads from a leaf.
// Signatures differ (ECDSA's are randomized), so the raw bytes do too.
func compareLeaves(t *testing.T, got, want *x509.Certificate) {
	t.Helper()
	fields := []struct {
		name      string
		got, want any
	}{
		{"Version", got.Version, want.Version},
		{"SerialNumber", got.SerialNumber.String(), want.SerialNumber.String()},
		{"SignatureAlgorithm", got.SignatureAlgorithm, want.SignatureAlgorithm},
		{"PublicKeyAlgorithm", got.PublicKeyAlgorithm, want.PublicKeyAlgorithm},
		{"RawIssuer", got.RawIssuer, want.RawIssuer},
		{"RawSubject", got.RawSubject, want.RawSubject},
		{"RawSubjectPublicKeyInfo", got.RawSubjectPublicKeyInfo, want.RawSubjectPublicKeyInfo},
		{"NotBefore", got.NotBefore, want.NotBefore},
		{"NotAfter", got.NotAfter, want.NotAfter},
		{"Extensions", got.Extensions, want.Extensions},
		{"KeyUsage", got.KeyUsage, want.KeyUsage},
		{"ExtKeyUsage", got.ExtKeyUsage, want.ExtKeyUsage},
		{"BasicConstraintsValid", got.BasicConstraintsValid, want.BasicConstraintsValid},
		{"IsCA", got.IsCA, want.IsCA},
		{"MaxPathLen", got.MaxPathLen, want.MaxPathLen},
		{"AuthorityKeyId", got.AuthorityKeyId, want.AuthorityKeyId},
		{"SubjectKeyId", got.SubjectKeyId, want.SubjectKeyId},
		{"URIs", got.URIs, want.URIs},
		{"DNSNames", got.DNSNames, want.DNSNames},
		{"UnhandledCriticalExtensions", got.UnhandledCriticalExtensions, want.UnhandledCriticalExtensions},
	}
	for _, f := range fields {
		if !reflect.DeepEqual(f.got, f.want) {
			t.Errorf("%s = %v, x509.CreateCertificate gives %v", f.name, f.got, f.want)
		}
	}
}

// TestCheckLeafRefuses shows checkLeaf catching each way a leaf could differ
// from what was asked: leaves from x509.CreateCertificate with one property
// wrong, and right leaves checked against the wrong expectation.
func TestCheckLeafRefuses(t *testing.T) {
	keys := leafKeys()
	caCert, signer := newIssuerCert(t, issuerSpec{key: "P-256", subject: pkix.Name{CommonName: "Root CA"}, start: testStart, end: testEnd})
	other, _ := newIssuerCert(t, issuerSpec{key: "P-384", subject: pkix.Name{CommonName: "Other CA"}, start: testStart, end: testEnd})
	life := lifetimeOf([]*x509.Certificate{caCert})
	want := leafTemplate{serial: big.NewInt(99), notBefore: testStart.Add(time.Hour), notAfter: testStart.Add(2 * time.Hour), pub: keys["P-256"].Public(), id: testID}
	good := &x509.Certificate{
		SerialNumber: want.serial, NotBefore: want.notBefore, NotAfter: want.notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{testID.URL()},
	}
	leafWith := func(edit func(*x509.Certificate)) *x509.Certificate {
		tmpl := *good
		if edit != nil {
			edit(&tmpl)
		}
		der, err := x509.CreateCertificate(rand.Reader, &tmpl, caCert, want.pub, signer)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if err := checkLeaf(leafWith(nil), want, caCert, life); err != nil {
		t.Fatalf("the right leaf is refused: %v", err)
	}
	other2 := spiffeid.RequireFromString("spiffe://cluster.local/ns/default/sa/admin")
	tests := []struct {
		name   string
		leaf   *x509.Certificate
		want   func(*leafTemplate)
		issuer *x509.Certificate
		life   *Lifetime
	}{
		{name: "a CA", leaf: leafWith(func(c *x509.Certificate) { c.IsCA = true })},
		{name: "no basic constraints", leaf: leafWith(func(c *x509.Certificate) { c.BasicConstraintsValid = false })},
		{name: "a path length", leaf: leafWith(func(c *x509.Certificate) { c.IsCA, c.MaxPathLen = true, 1 })},
		{name: "certificate signing usage", leaf: leafWith(func(c *x509.Certificate) { c.KeyUsage |= x509.KeyUsageCertSign })},
		{name: "no key usage", leaf: leafWith(func(c *x509.Certificate) { c.KeyUsage = 0 })},
		{name: "server auth only", leaf: leafWith(func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth} })},
		{name: "any extended usage", leaf: leafWith(func(c *x509.Certificate) { c.ExtKeyUsage = append(c.ExtKeyUsage, x509.ExtKeyUsageAny) })},
		{name: "a second URI", leaf: leafWith(func(c *x509.Certificate) { c.URIs = append(c.URIs, other2.URL()) })},
		{name: "another identity", leaf: leafWith(func(c *x509.Certificate) { c.URIs = []*url.URL{other2.URL()} })},
		{name: "a DNS name", leaf: leafWith(func(c *x509.Certificate) { c.DNSNames = []string{"istiod.istio-system.svc"} })},
		{name: "a subject", leaf: leafWith(func(c *x509.Certificate) { c.Subject = pkix.Name{CommonName: "web"} })},
		{name: "name constraints", leaf: leafWith(func(c *x509.Certificate) { c.PermittedDNSDomains = []string{"example.com"} })},
		{name: "an extra extension", leaf: leafWith(func(c *x509.Certificate) {
			c.ExtraExtensions = []pkix.Extension{{Id: []int{1, 2, 3, 4}, Value: []byte{5, 0}}}
		})},
		{name: "another serial", leaf: leafWith(nil), want: func(w *leafTemplate) { w.serial = big.NewInt(100) }},
		{name: "another key", leaf: leafWith(nil), want: func(w *leafTemplate) { w.pub = keys["P-384"].Public() }},
		{name: "another validity", leaf: leafWith(nil), want: func(w *leafTemplate) { w.notAfter = w.notAfter.Add(time.Second) }},
		{name: "another issuer", leaf: leafWith(nil), issuer: other},
		{name: "starts before the chain", leaf: leafWith(nil), life: &Lifetime{NotBefore: want.notBefore.Add(time.Second), NotAfter: testEnd}},
		{name: "ends after the chain", leaf: leafWith(nil), life: &Lifetime{NotBefore: testStart, NotAfter: want.notAfter.Add(-time.Second)}},
		{name: "ends before it starts", leaf: leafWith(func(c *x509.Certificate) { c.NotBefore, c.NotAfter = c.NotAfter, c.NotBefore }),
			want: func(w *leafTemplate) { w.notBefore, w.notAfter = w.notAfter, w.notBefore }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, issuer, l := want, caCert, life
			if tt.want != nil {
				tt.want(&w)
			}
			if tt.issuer != nil {
				issuer = tt.issuer
			}
			if tt.life != nil {
				l = *tt.life
			}
			if err := checkLeaf(tt.leaf, w, issuer, l); err == nil {
				t.Error("checkLeaf accepted it")
			}
		})
	}
}

// badSigner signs with another key than the one it reports: a faulty HSM,
// say. Leaves it signs must not be handed out.
type badSigner struct {
	crypto.Signer
	other crypto.Signer
}

func (s badSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return s.other.Sign(r, digest, opts)
}

// TestLeafIssuerChecksForeignSigners: a signer that is not one of the
// standard library's keys has every signature checked, as
// x509.CreateCertificate did; those keys are trusted to sign correctly.
func TestLeafIssuerChecksForeignSigners(t *testing.T) {
	keys := leafKeys()
	caCert, signer := newIssuerCert(t, issuerSpec{key: "P-256", subject: pkix.Name{CommonName: "Root CA"}, start: testStart, end: testEnd})
	lt := leafTemplate{serial: big.NewInt(7), notBefore: testStart.Add(time.Hour), notAfter: testStart.Add(2 * time.Hour), pub: keys["P-256"].Public(), id: testID}
	life := lifetimeOf([]*x509.Certificate{caCert})

	li, err := newLeafIssuer(badSigner{Signer: signer, other: keys["P-384"]}, caCert)
	if err != nil {
		t.Fatal(err)
	}
	if !li.verify {
		t.Error("a foreign signer is not checked")
	}
	if _, err := li.issue(lt, life); err == nil || !strings.Contains(err.Error(), "signature returned by signer is invalid") {
		t.Errorf("issue with a signer of the wrong key: err = %v, want an invalid signature", err)
	}
	if li, err := newLeafIssuer(signer, caCert); err != nil || li.verify {
		t.Errorf("newLeafIssuer(in-memory key) = verify %v, %v; want no extra check", li != nil && li.verify, err)
	}
	if _, err := newLeafIssuer(keys["P-384"], caCert); err == nil {
		t.Error("a key that does not match the certificate is accepted")
	}
}

// FuzzLeafEncoding compares the hand-encoded leaf with
// x509.CreateCertificate's for arbitrary serials, validity periods and
// SPIFFE IDs: whatever CreateCertificate encodes, the encoder encodes to
// the same TBSCertificate and checkLeaf accepts; what the encoder refuses,
// CreateCertificate refuses too, or checkLeaf would have.
func FuzzLeafEncoding(f *testing.F) {
	f.Add([]byte{0x7f}, int64(0), int64(3600), "ns/default/sa/web", uint8(0), uint8(0))
	f.Add([]byte{0xff, 0xff}, int64(-60), int64(86400*365*30), "ns/a/sa/b", uint8(1), uint8(2))
	f.Add([]byte{0}, int64(1), int64(0), "x", uint8(2), uint8(1))
	f.Fuzz(func(t *testing.T, serial []byte, startOff, ttl int64, path string, caKey, leafKey uint8) {
		if len(serial) > 40 {
			return
		}
		id, err := spiffeid.FromPath(spiffeid.RequireTrustDomainFromString("cluster.local"), "/"+path)
		if err != nil {
			return
		}
		caNames := []string{"P-256", "RSA-2048", "Ed25519", "P-384"}
		leafNames := []string{"P-256", "P-384", "RSA-2048"}
		issuerStart := time.Date(1949, 1, 1, 0, 0, 0, 0, time.UTC)
		issuerEnd := time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
		caCert, signer := fuzzIssuer(t, caNames[int(caKey)%len(caNames)], issuerStart, issuerEnd)
		nb := testStart.Add(time.Duration(startOff%(100*366*86400)) * time.Second)
		lt := leafTemplate{
			serial:    new(big.Int).SetBytes(serial),
			notBefore: nb,
			notAfter:  nb.Add(time.Duration(ttl%(100*366*86400)) * time.Second),
			pub:       leafKeys()[leafNames[int(leafKey)%len(leafNames)]].Public(),
			id:        id,
		}
		lt.rawKey = spkiOf(t, lt.pub)
		li, err := newLeafIssuer(signer, caCert)
		if err != nil {
			t.Fatal(err)
		}
		want, stdErr := stdlibLeaf(t, lt, caCert, signer)
		got, err := li.issue(lt, lifetimeOf([]*x509.Certificate{caCert}))
		switch {
		case stdErr != nil && err == nil:
			t.Fatalf("encoded a leaf CreateCertificate refuses (%v)", stdErr)
		case stdErr != nil:
			return
		case err != nil:
			// Only what checkLeaf must refuse may fail here: a serial of 0
			// (CreateCertificate accepts it) or a validity outside the
			// chain or reversed.
			if lt.serial.Sign() > 0 && checkLeaf(want, lt, caCert, lifetimeOf([]*x509.Certificate{caCert})) == nil {
				t.Fatalf("refused a leaf CreateCertificate encodes: %v", err)
			}
			return
		}
		if !bytes.Equal(got.RawTBSCertificate, want.RawTBSCertificate) {
			t.Fatalf("TBSCertificate differs:\n got %x\nwant %x", got.RawTBSCertificate, want.RawTBSCertificate)
		}
	})
}

var fuzzIssuers sync.Map // key name → *fuzzIssuerCA

type fuzzIssuerCA struct {
	cert   *x509.Certificate
	signer crypto.Signer
}

// fuzzIssuer makes one CA per key type for the whole fuzz run.
func fuzzIssuer(t *testing.T, key string, start, end time.Time) (*x509.Certificate, crypto.Signer) {
	if v, ok := fuzzIssuers.Load(key); ok {
		c := v.(*fuzzIssuerCA)
		return c.cert, c.signer
	}
	cert, signer := newIssuerCert(t, issuerSpec{key: key, subject: pkix.Name{CommonName: "Fuzz CA " + key}, start: start, end: end})
	v, _ := fuzzIssuers.LoadOrStore(key, &fuzzIssuerCA{cert, signer})
	c := v.(*fuzzIssuerCA)
	return c.cert, c.signer
}

// TestAppendHeader checks the hand-written DER lengths against cryptobyte
// at every boundary of the length encoding.
func TestAppendHeader(t *testing.T) {
	for _, n := range []int{0, 1, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x10000} {
		der := append(appendHeader(nil, 0x30, n), make([]byte, n)...)
		if len(der) != tlvLen(n) {
			t.Errorf("n=%d: tlvLen = %d, element is %d bytes", n, tlvLen(n), len(der))
		}
		s := cryptobyte.String(der)
		var body cryptobyte.String
		if !s.ReadASN1(&body, cbasn1.SEQUENCE) || len(body) != n || len(s) != 0 {
			t.Errorf("n=%d: %x... is not a DER SEQUENCE of %d bytes", n, der[:min(len(der), 6)], n)
		}
	}
}
