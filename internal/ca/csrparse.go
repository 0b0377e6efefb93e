package ca

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"net/url"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// parseRequest parses a DER PKCS#10 certificate request. Requests of the
// shape agents send (a P-256, P-384 or RSA key, no attributes but one
// extension request, SPIFFE URIs as the only names) are read by
// parseCommonRequest; anything else by x509.ParseCertificateRequest.
// x509's parser is built on reflection-driven encoding/asn1 and was ~8% of
// an issuance over gRPC, plus the stack growth it caused on each handler
// goroutine.
func parseRequest(der []byte) (*x509.CertificateRequest, error) {
	if csr, ok := parseCommonRequest(der); ok {
		return csr, nil
	}
	return x509.ParseCertificateRequest(der)
}

// oidExtensionRequest is PKCS#9's extensionRequest attribute (RFC 2985).
var oidExtensionRequest = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 14}

// parseCommonRequest parses der with cryptobyte when it has the common
// shape, filling the fields x509.ParseCertificateRequest fills (but the
// deprecated Attributes) with the same values; ok false leaves the request
// to x509. It must never accept a request x509 refuses, nor read one
// differently: FuzzParseCommonRequest compares the two. Where x509 is
// lenient (attributes it ignores, names it accepts), this parser hands
// over rather than copy the leniency.
func parseCommonRequest(der []byte) (*x509.CertificateRequest, bool) {
	input := cryptobyte.String(der)
	var req, info, tbs, subject, spki, attrs, sigAlg cryptobyte.String
	var version int
	var sig asn1.BitString
	if !input.ReadASN1(&req, cbasn1.SEQUENCE) || !input.Empty() ||
		!req.ReadASN1Element(&tbs, cbasn1.SEQUENCE) ||
		!req.ReadASN1Element(&sigAlg, cbasn1.SEQUENCE) ||
		!req.ReadASN1BitString(&sig) || !req.Empty() {
		return nil, false
	}
	info = tbs
	if !info.ReadASN1(&info, cbasn1.SEQUENCE) ||
		!info.ReadASN1Integer(&version) || version != 0 ||
		!info.ReadASN1Element(&subject, cbasn1.SEQUENCE) ||
		!info.ReadASN1Element(&spki, cbasn1.SEQUENCE) ||
		!info.ReadASN1(&attrs, cbasn1.Tag(0).Constructed().ContextSpecific()) || !info.Empty() {
		return nil, false
	}
	algo, ok := requestSignatureAlgorithm(sigAlg)
	if !ok || sig.BitLength%8 != 0 {
		return nil, false
	}
	csr := &x509.CertificateRequest{
		Raw:                      der,
		RawTBSCertificateRequest: tbs,
		RawSubjectPublicKeyInfo:  spki,
		RawSubject:               subject,
		Signature:                sig.Bytes,
		SignatureAlgorithm:       algo,
	}
	if len(subject) != 2 { // not an empty name: x509's own reading
		var rdn pkix.RDNSequence
		if rest, err := asn1.Unmarshal(subject, &rdn); err != nil || len(rest) != 0 {
			return nil, false
		}
		csr.Subject.FillFromRDNSequence(&rdn)
	}
	pub, err := parseKey(spki)
	if err != nil {
		return nil, false
	}
	csr.PublicKey = pub
	if csr.PublicKeyAlgorithm, ok = publicKeyAlgorithm(pub); !ok {
		return nil, false
	}
	if !attrs.Empty() {
		// Exactly one attribute, an extension request with one value.
		var attr, values, exts cryptobyte.String
		var id asn1.ObjectIdentifier
		if !attrs.ReadASN1(&attr, cbasn1.SEQUENCE) || !attrs.Empty() ||
			!attr.ReadASN1ObjectIdentifier(&id) || !id.Equal(oidExtensionRequest) ||
			!attr.ReadASN1(&values, cbasn1.SET) || !attr.Empty() ||
			!values.ReadASN1(&exts, cbasn1.SEQUENCE) || !values.Empty() {
			return nil, false
		}
		if csr.Extensions, ok = readExtensions(exts); !ok {
			return nil, false
		}
	}
	for _, ext := range csr.Extensions {
		if ext.Id.Equal(oidExtSubjectAltName) {
			if csr.URIs, ok = readURIs(ext.Value); !ok {
				return nil, false
			}
		}
	}
	return csr, true
}

// parseKey parses a SubjectPublicKeyInfo as x509 does. A P-256 key in its
// one DER form (see p256KeyHeader) goes straight to the point decoder that
// x509 ends up calling for it.
func parseKey(spki []byte) (any, error) {
	if len(spki) == len(p256KeyHeader)+65 && bytes.HasPrefix(spki, p256KeyHeader) {
		return ecdsa.ParseUncompressedPublicKey(elliptic.P256(), spki[len(p256KeyHeader):])
	}
	return x509.ParsePKIXPublicKey(spki)
}

// requestSignatureAlgorithm maps the AlgorithmIdentifiers of the ECDSA and
// RSA PKCS#1 v1.5 signatures with SHA-2, encoded as RFC 5758 and RFC 4055
// say (no parameters, NULL parameters).
func requestSignatureAlgorithm(der cryptobyte.String) (x509.SignatureAlgorithm, bool) {
	var alg cryptobyte.String
	var oid asn1.ObjectIdentifier
	if !der.ReadASN1(&alg, cbasn1.SEQUENCE) || !alg.ReadASN1ObjectIdentifier(&oid) {
		return 0, false
	}
	noParams := alg.Empty()
	nullParams := !noParams && alg.PeekASN1Tag(cbasn1.NULL) && alg.SkipASN1(cbasn1.NULL) && alg.Empty()
	switch {
	case noParams && oid.Equal(oidSigECDSAWithSHA256):
		return x509.ECDSAWithSHA256, true
	case noParams && oid.Equal(oidSigECDSAWithSHA384):
		return x509.ECDSAWithSHA384, true
	case noParams && oid.Equal(oidSigECDSAWithSHA512):
		return x509.ECDSAWithSHA512, true
	case nullParams && oid.Equal(oidSigSHA256WithRSA):
		return x509.SHA256WithRSA, true
	case nullParams && oid.Equal(oidSigSHA384WithRSA):
		return x509.SHA384WithRSA, true
	case nullParams && oid.Equal(oidSigSHA512WithRSA):
		return x509.SHA512WithRSA, true
	}
	return 0, false
}

var (
	oidSigSHA384WithRSA = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 12}
	oidSigSHA512WithRSA = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 13}
)

// publicKeyAlgorithm is x509's name for the kind of pub, for the key types
// the CA signs for.
func publicKeyAlgorithm(pub any) (x509.PublicKeyAlgorithm, bool) {
	switch pub.(type) {
	case *ecdsa.PublicKey:
		return x509.ECDSA, true
	case *rsa.PublicKey:
		return x509.RSA, true
	}
	return x509.UnknownPublicKeyAlgorithm, false
}

// readExtensions reads a DER SEQUENCE OF Extension's content, refusing
// duplicates as x509 does.
func readExtensions(der cryptobyte.String) ([]pkix.Extension, bool) {
	var out []pkix.Extension
	for !der.Empty() {
		var ext cryptobyte.String
		var e pkix.Extension
		var value []byte
		// (cryptobyte's ReadOptionalASN1Boolean is for an explicitly
		// tagged BOOLEAN, not this DEFAULT FALSE one.)
		if !der.ReadASN1(&ext, cbasn1.SEQUENCE) ||
			!ext.ReadASN1ObjectIdentifier(&e.Id) ||
			ext.PeekASN1Tag(cbasn1.BOOLEAN) && !ext.ReadASN1Boolean(&e.Critical) ||
			!ext.ReadASN1Bytes(&value, cbasn1.OCTET_STRING) || !ext.Empty() {
			return nil, false
		}
		e.Value = value
		for _, o := range out {
			if o.Id.Equal(e.Id) {
				return nil, false
			}
		}
		out = append(out, e)
	}
	return out, true
}

// readURIs reads a subject alternative name extension that names URIs
// only, each checked as x509 checks it (ASCII, parses as a URL, a host that
// is a plausible domain name).
func readURIs(value []byte) ([]*url.URL, bool) {
	s := cryptobyte.String(value)
	var names cryptobyte.String
	if !s.ReadASN1(&names, cbasn1.SEQUENCE) || !s.Empty() {
		return nil, false
	}
	var uris []*url.URL
	for !names.Empty() {
		var name cryptobyte.String
		if !names.ReadASN1(&name, cbasn1.Tag(6).ContextSpecific()) || !isIA5(string(name)) {
			return nil, false
		}
		u, err := url.Parse(string(name))
		if err != nil || !validHost(u.Host) {
			return nil, false
		}
		uris = append(uris, u)
	}
	return uris, true
}

// validHost accepts what x509 accepts as the host of a URI name (Go 1.26's
// domainNameValid): empty, or printable ASCII labels without an empty one
// and without a trailing dot.
func validHost(h string) bool {
	if h == "" {
		return true
	}
	label := 0
	for i := 0; i < len(h); i++ {
		switch c := h[i]; {
		case c < 33 || c > 126:
			return false
		case c == '.':
			if label == 0 {
				return false
			}
			label = 0
		default:
			label++
		}
	}
	return label > 0
}
