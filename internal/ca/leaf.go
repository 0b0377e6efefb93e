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
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Leaves are encoded here rather than by x509.CreateCertificate, which
// checks every signature it makes against the signer's public key: a second
// P-256 verification per issuance (~70 µs, a fifth of an issuance over
// gRPC) that guards against a faulty crypto.Signer. The signers of this
// package are the standard library's in-memory keys, whose RSA signing
// already checks its own result; a signer of any other type still gets the
// check (leafIssuer.verify). The encoding is DER exactly as CreateCertificate
// produces for the same template (the tests compare the two byte for byte),
// and every leaf is parsed back and checked by checkLeaf before it leaves
// Issue.

// leafIssuer is what every leaf of one signing state shares, encoded once
// when the state is loaded.
type leafIssuer struct {
	signer crypto.Signer
	caCert *x509.Certificate
	// sigAlg is the DER AlgorithmIdentifier of the signature, and hash its
	// digest (0 for Ed25519, which signs the message itself).
	sigAlg []byte
	hash   crypto.Hash
	// issuer is the DER Name of the signing CA.
	issuer []byte
	// aki is the signing CA's subject key ID, for the leaf's authority key
	// identifier; empty leaves the extension out, as CreateCertificate does.
	aki []byte
	// verify is set for a signer that is not one of the standard library's
	// keys: its signatures are checked before a leaf is handed out.
	verify bool
	// kuExt and kuExtRSA are the key usage extension for ECDSA and RSA
	// leaf keys; constExts the extensions after it but the SAN.
	kuExt, kuExtRSA, constExts []byte
}

// Object identifiers of what a leaf carries.
var (
	oidSigECDSAWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidSigECDSAWithSHA384 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}
	oidSigECDSAWithSHA512 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}
	oidSigSHA256WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
	oidSigEd25519         = asn1.ObjectIdentifier{1, 3, 101, 112}

	oidExtKeyUsage       = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidExtExtKeyUsage    = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidExtAuthorityKeyID = asn1.ObjectIdentifier{2, 5, 29, 35}
	oidExtSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidEKUServerAuth     = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 1}
	oidEKUClientAuth     = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 2}
)

// newLeafIssuer prepares signer and caCert, the certificate of signer's
// key, to issue leaves. The signature algorithm is the one
// x509.CreateCertificate picks for the key.
func newLeafIssuer(signer crypto.Signer, caCert *x509.Certificate) (*leafIssuer, error) {
	li := &leafIssuer{signer: signer, caCert: caCert, issuer: caCert.RawSubject}
	var alg cryptobyte.Builder
	switch pub := signer.Public().(type) {
	case *ecdsa.PublicKey:
		oid := oidSigECDSAWithSHA256
		li.hash = crypto.SHA256
		switch pub.Curve {
		case elliptic.P224(), elliptic.P256():
		case elliptic.P384():
			oid, li.hash = oidSigECDSAWithSHA384, crypto.SHA384
		case elliptic.P521():
			oid, li.hash = oidSigECDSAWithSHA512, crypto.SHA512
		default:
			return nil, errors.New("unsupported elliptic curve for the signing key")
		}
		alg.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(oid) })
	case *rsa.PublicKey:
		li.hash = crypto.SHA256
		alg.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oidSigSHA256WithRSA)
			b.AddASN1NULL()
		})
	case ed25519.PublicKey:
		alg.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(oidSigEd25519) })
	default:
		return nil, fmt.Errorf("unsupported signing key type %T", pub)
	}
	li.sigAlg = alg.BytesOrPanic()
	if len(li.issuer) == 0 {
		return nil, errors.New("signing certificate has no encoded subject")
	}
	// CreateCertificate takes the parent's key ID unless issuer and leaf
	// subject are the same name: a CA with an empty subject, like the leaf.
	if !bytes.Equal(li.issuer, emptyName) {
		li.aki = caCert.SubjectKeyId
	}
	switch signer.(type) {
	case *ecdsa.PrivateKey, *rsa.PrivateKey, ed25519.PrivateKey:
	default:
		li.verify = true
	}
	if !publicKeysEqual(signer.Public(), caCert.PublicKey) {
		return nil, errors.New("private key does not match the signing certificate")
	}
	if err := li.encodeConstExtensions(); err != nil {
		return nil, fmt.Errorf("encode leaf extensions: %w", err)
	}
	return li, nil
}

// emptyName is the DER of an empty distinguished name, the leaves' subject:
// a SPIFFE leaf names its workload in the URI SAN only.
var emptyName = []byte{0x30, 0x00}

// leafTemplate is what differs between the leaves of one issuer.
type leafTemplate struct {
	serial              *big.Int
	notBefore, notAfter time.Time
	pub                 crypto.PublicKey
	// rawKey is the request's encoding of pub, if any (see encodedKey).
	rawKey []byte
	id     spiffeid.ID
}

// encodedKey is the DER SubjectPublicKeyInfo of t.pub, as
// x509.MarshalPKIXPublicKey writes it. A P-256 key's encoding is unique (a
// fixed header, then the uncompressed point), so when t.rawKey, the
// request's own encoding, has exactly that form it is that encoding, and
// is used as is: marshalling the key again was 3% of an issuance.
// checkLeaf compares the key the leaf carries with t.pub all the same.
func (t *leafTemplate) encodedKey() ([]byte, error) {
	if k, ok := t.pub.(*ecdsa.PublicKey); ok && k.Curve == elliptic.P256() &&
		len(t.rawKey) == len(p256KeyHeader)+65 && bytes.HasPrefix(t.rawKey, p256KeyHeader) {
		return t.rawKey, nil
	}
	return x509.MarshalPKIXPublicKey(t.pub)
}

// p256KeyHeader starts every P-256 SubjectPublicKeyInfo: SEQUENCE {
// SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (no unused bits) },
// followed by the 65-byte uncompressed point (RFC 5480).
var p256KeyHeader = []byte{
	0x30, 0x59, 0x30, 0x13,
	0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
	0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
	0x03, 0x42, 0x00,
}

// keyUsage is the leaf's key usage: digital signature, and key encipherment
// for an RSA key (TLS 1.2's RSA key exchange).
func (t *leafTemplate) keyUsage() x509.KeyUsage {
	if _, ok := t.pub.(*rsa.PublicKey); ok {
		return x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	}
	return x509.KeyUsageDigitalSignature
}

// issue encodes, signs and parses the leaf of t, and checks it with
// checkLeaf against l, the lifetime of the signing chain.
func (li *leafIssuer) issue(t leafTemplate, l Lifetime) (*x509.Certificate, error) {
	tbs, err := li.tbs(t)
	if err != nil {
		return nil, err
	}
	sig, err := crypto.SignMessage(li.signer, rand.Reader, tbs, li.hash)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	// Certificate ::= SEQUENCE { tbs, signature algorithm, BIT STRING }
	bits := 1 + len(sig) // no unused bits
	body := len(tbs) + len(li.sigAlg) + tlvLen(bits)
	der := make([]byte, 0, tlvLen(body))
	der = appendHeader(der, 0x30, body)
	der = append(der, tbs...)
	der = append(der, li.sigAlg...)
	der = appendHeader(der, 0x03, bits)
	der = append(der, 0)
	der = append(der, sig...)
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse issued certificate: %w", err)
	}
	if li.verify {
		if err := leaf.CheckSignatureFrom(li.caCert); err != nil {
			return nil, fmt.Errorf("signature returned by signer is invalid: %w", err)
		}
	}
	if err := checkLeaf(leaf, t, li.caCert, l); err != nil {
		return nil, fmt.Errorf("issued certificate: %w", err)
	}
	return leaf, nil
}

// tbs is the DER TBSCertificate of t (RFC 5280, 4.1), laid out as
// x509.CreateCertificate lays out the same template. The parts every leaf
// shares come encoded from newLeafIssuer; what differs is encoded here and
// the whole appended into one buffer of the right size.
func (li *leafIssuer) tbs(t leafTemplate) ([]byte, error) {
	if t.serial == nil || t.serial.Sign() <= 0 {
		return nil, errors.New("serial number must be positive")
	}
	spki, err := t.encodedKey()
	if err != nil {
		return nil, fmt.Errorf("encode public key: %w", err)
	}
	uri := t.id.String()
	if !isIA5(uri) {
		return nil, fmt.Errorf("SPIFFE ID %q is not ASCII", uri)
	}
	var small cryptobyte.Builder // serial and validity: under 60 bytes
	small.AddASN1BigInt(t.serial)
	serialLen := len(small.BytesOrPanic())
	small.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		addTime(b, t.notBefore)
		addTime(b, t.notAfter)
	})
	head, err := small.Bytes()
	if err != nil {
		return nil, fmt.Errorf("encode validity: %w", err)
	}
	serial, validity := head[:serialLen], head[serialLen:]

	ku := li.kuExt
	if t.keyUsage() != x509.KeyUsageDigitalSignature {
		ku = li.kuExtRSA
	}
	// The SAN extension: SEQUENCE { OID, TRUE, OCTET STRING { SEQUENCE {
	// [6] uri } } }.
	name := tlvLen(len(uri)) // [6] uri
	names := tlvLen(name)    // SEQUENCE OF GeneralName
	value := tlvLen(names)   // OCTET STRING
	sanExt := tlvLen(len(sanPrefix) + value)
	exts := len(ku) + len(li.constExts) + sanExt
	extsWrapped := tlvLen(tlvLen(exts))
	body := len(tbsVersion) + len(serial) + len(li.sigAlg) + len(li.issuer) + len(validity) + len(emptyName) + len(spki) + extsWrapped

	out := make([]byte, 0, tlvLen(body))
	out = appendHeader(out, 0x30, body)
	out = append(out, tbsVersion...)
	out = append(out, serial...)
	out = append(out, li.sigAlg...)
	out = append(out, li.issuer...)
	out = append(out, validity...)
	out = append(out, emptyName...)
	out = append(out, spki...)
	out = appendHeader(out, 0xa3, tlvLen(exts)) // [3] EXPLICIT
	out = appendHeader(out, 0x30, exts)
	out = append(out, ku...)
	out = append(out, li.constExts...)
	out = appendHeader(out, 0x30, len(sanPrefix)+value)
	out = append(out, sanPrefix...)
	out = appendHeader(out, 0x04, names)
	out = appendHeader(out, 0x30, name)
	out = appendHeader(out, 0x86, len(uri)) // [6] IMPLICIT IA5String
	out = append(out, uri...)
	return out, nil
}

// tbsVersion is [0] EXPLICIT INTEGER 2: X.509 v3.
var tbsVersion = []byte{0xa0, 0x03, 0x02, 0x01, 0x02}

// sanPrefix starts the subject alternative name extension: its OID and
// critical TRUE, because the subject is empty (RFC 5280, 4.2.1.6).
var sanPrefix = []byte{0x06, 0x03, 0x55, 0x1d, 0x11, 0x01, 0x01, 0xff}

// tlvLen is the length of a DER element whose content is n bytes long.
func tlvLen(n int) int {
	switch {
	case n < 0x80:
		return 2 + n
	case n <= 0xff:
		return 3 + n
	case n <= 0xffff:
		return 4 + n
	default:
		return 5 + n
	}
}

// appendHeader appends the DER tag and length of an element with n bytes
// of content (definite form, as few length bytes as DER requires).
func appendHeader(dst []byte, tag byte, n int) []byte {
	dst = append(dst, tag)
	switch {
	case n < 0x80:
		return append(dst, byte(n))
	case n <= 0xff:
		return append(dst, 0x81, byte(n))
	case n <= 0xffff:
		return append(dst, 0x82, byte(n>>8), byte(n))
	default:
		return append(dst, 0x83, byte(n>>16), byte(n>>8), byte(n))
	}
}

// encodeConstExtensions encodes the extensions every leaf of li carries,
// in CreateCertificate's order: key usage (two forms, ECDSA and RSA keys),
// then extended key usage, basic constraints and authority key ID. The
// SAN, last, is per leaf.
func (li *leafIssuer) encodeConstExtensions() error {
	ku := func(u x509.KeyUsage) ([]byte, error) {
		var b cryptobyte.Builder
		addExtension(&b, oidExtKeyUsage, true, func(b *cryptobyte.Builder) { addKeyUsage(b, u) })
		return b.Bytes()
	}
	var err error
	if li.kuExt, err = ku(x509.KeyUsageDigitalSignature); err != nil {
		return err
	}
	if li.kuExtRSA, err = ku(x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment); err != nil {
		return err
	}
	var b cryptobyte.Builder
	addExtension(&b, oidExtExtKeyUsage, false, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oidEKUServerAuth)
			b.AddASN1ObjectIdentifier(oidEKUClientAuth)
		})
	})
	addExtension(&b, oidBasicConstraints, true, func(b *cryptobyte.Builder) {
		// CA:FALSE is the default, and DER leaves defaults out.
		b.AddASN1(cbasn1.SEQUENCE, func(*cryptobyte.Builder) {})
	})
	if len(li.aki) > 0 {
		addExtension(&b, oidExtAuthorityKeyID, false, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.Tag(0).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes(li.aki) })
			})
		})
	}
	li.constExts, err = b.Bytes()
	return err
}

// addExtension writes one Extension; critical FALSE is the default and
// left out.
func addExtension(b *cryptobyte.Builder, oid asn1.ObjectIdentifier, critical bool, value cryptobyte.BuilderContinuation) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oid)
		if critical {
			b.AddASN1Boolean(true)
		}
		b.AddASN1(cbasn1.OCTET_STRING, value)
	})
}

// addKeyUsage writes ku as the BIT STRING of RFC 5280, 4.2.1.3: bit 0
// (digital signature) is the most significant bit of the first byte, and
// trailing zero bits are left out, as DER requires.
func addKeyUsage(b *cryptobyte.Builder, ku x509.KeyUsage) {
	bits := []byte{reverseBits(byte(ku)), reverseBits(byte(ku >> 8))}
	if bits[1] == 0 {
		bits = bits[:1]
	}
	// The bits after the last one set are unused; with none set, as
	// encoding/asn1 writes it, none are.
	unused := uint8(0)
	if last := bits[len(bits)-1]; last != 0 {
		for last&(1<<unused) == 0 {
			unused++
		}
	}
	b.AddASN1(cbasn1.BIT_STRING, func(b *cryptobyte.Builder) {
		b.AddUint8(unused)
		b.AddBytes(bits)
	})
}

func reverseBits(v byte) byte {
	var r byte
	for range 8 {
		r = r<<1 | v&1
		v >>= 1
	}
	return r
}

// addTime writes t as X.509 does (RFC 5280, 4.1.2.5): UTCTime from 1950 to
// 2049, GeneralizedTime otherwise, whole seconds in UTC.
func addTime(b *cryptobyte.Builder, t time.Time) {
	t = t.UTC()
	if y := t.Year(); y >= 1950 && y < 2050 {
		b.AddASN1UTCTime(t)
	} else {
		b.AddASN1GeneralizedTime(t)
	}
}

func isIA5(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
