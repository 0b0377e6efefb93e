package authn

import (
	"context"
	"errors"
	"fmt"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
)

// KeySource supplies the verification keys of jwtRules whose keys are not
// inline (jwksUri, or OpenID discovery from the issuer). It is the only
// point where Authenticate may wait on I/O; JWKSCache is the production
// implementation.
type KeySource interface {
	// Keys returns the current key set for rule. kid is the key ID the
	// token names ("" when none): a source may take a kid it does not know
	// as the sign of a key rotation and refetch, at a bounded rate. An
	// error means no key set has ever been obtained: tokens for the rule
	// then fail (closed).
	Keys(ctx context.Context, rule *Rule, kid string) (*KeySet, error)
}

// errNoKeySource is the cause given when a rule needs fetched keys and the
// caller passed no KeySource.
var errNoKeySource = errors.New("no key source for the rule's jwksUri")

// KeySet is a parsed JSON Web Key Set, reduced to the public keys a JWT can
// be verified with, each exported once to its crypto type so that a
// verification does no key conversion. It is immutable and safe for
// concurrent use.
type KeySet struct {
	keys []verifyKey
}

// verifyKey is one usable key of a KeySet.
type verifyKey struct {
	kid string
	alg string    // the key's "alg", "" when unset (then any alg of its type)
	kty keyFamily // which algorithms can use it
	crv string    // curve, for EC and OKP keys
	raw any       // *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey or []byte
}

// keyFamily groups JWS algorithms by the key type they need; matching
// them is what defeats algorithm confusion (an RSA public key used as an
// HMAC secret).
type keyFamily uint8

const (
	familyNone keyFamily = iota
	familyRSA
	familyEC
	familyOct
	familyOKP
)

// algSpec is a JWS algorithm Envoy's jwt_authn filter accepts.
type algSpec struct {
	alg    jwa.SignatureAlgorithm
	family keyFamily
	crv    string // required curve, for ES* and EdDSA
}

// supportedAlgs are the algorithms Envoy verifies. Anything else, "none"
// first of all, is refused before a key is looked at.
var supportedAlgs = map[string]algSpec{
	"RS256": {jwa.RS256(), familyRSA, ""},
	"RS384": {jwa.RS384(), familyRSA, ""},
	"RS512": {jwa.RS512(), familyRSA, ""},
	"PS256": {jwa.PS256(), familyRSA, ""},
	"PS384": {jwa.PS384(), familyRSA, ""},
	"PS512": {jwa.PS512(), familyRSA, ""},
	"ES256": {jwa.ES256(), familyEC, "P-256"},
	"ES384": {jwa.ES384(), familyEC, "P-384"},
	"ES512": {jwa.ES512(), familyEC, "P-521"},
	"HS256": {jwa.HS256(), familyOct, ""},
	"HS384": {jwa.HS384(), familyOct, ""},
	"HS512": {jwa.HS512(), familyOct, ""},
	"EdDSA": {jwa.EdDSA(), familyOKP, "Ed25519"},
}

// maxKeysPerSet bounds the work one JWKS document can cause.
const maxKeysPerSet = 100

// ParseKeySet parses a JSON Web Key Set document (RFC 7517 §5). Keys that
// cannot be used to verify a JWT (unknown types or curves, encryption-only
// keys, unparseable entries) are skipped, as Envoy does; a set left with no
// usable key is an error. Private keys are reduced to their public part.
func ParseKeySet(data []byte) (*KeySet, error) {
	set, err := jwk.Parse(data, jwk.WithIgnoreParseError(true))
	if err != nil {
		return nil, fmt.Errorf("authn: parse JWKS: %w", err)
	}
	return NewKeySet(set)
}

// NewKeySet builds a KeySet from a set parsed by jwx.
func NewKeySet(set jwk.Set) (*KeySet, error) {
	if set == nil || set.Len() == 0 {
		return nil, errors.New("authn: JWKS has no keys")
	}
	if set.Len() > maxKeysPerSet {
		return nil, fmt.Errorf("authn: JWKS has %d keys, more than %d", set.Len(), maxKeysPerSet)
	}
	ks := &KeySet{}
	var firstErr error
	for i := range set.Len() {
		k, _ := set.Key(i)
		vk, err := newVerifyKey(k)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		ks.keys = append(ks.keys, vk)
	}
	if len(ks.keys) == 0 {
		return nil, fmt.Errorf("authn: JWKS has no usable key: %w", firstErr)
	}
	return ks, nil
}

func newVerifyKey(k jwk.Key) (verifyKey, error) {
	var vk verifyKey
	vk.kid, _ = k.KeyID()
	if use, ok := k.KeyUsage(); ok && use != "" && use != "sig" {
		return vk, fmt.Errorf("key %q: use %q is not sig", vk.kid, use)
	}
	if alg, ok := k.Algorithm(); ok {
		vk.alg = alg.String()
		if _, known := supportedAlgs[vk.alg]; !known {
			return vk, fmt.Errorf("key %q: unsupported alg %q", vk.kid, vk.alg)
		}
	}
	pub, err := jwk.PublicKeyOf(k)
	if err != nil {
		return vk, fmt.Errorf("key %q: %w", vk.kid, err)
	}
	switch kty := pub.KeyType().String(); kty {
	case "RSA":
		vk.kty = familyRSA
	case "EC":
		vk.kty = familyEC
	case "oct":
		vk.kty = familyOct
	case "OKP":
		vk.kty = familyOKP
	default:
		return vk, fmt.Errorf("key %q: unsupported kty %q", vk.kid, kty)
	}
	if vk.kty == familyEC || vk.kty == familyOKP {
		var crv jwa.EllipticCurveAlgorithm
		if err := pub.Get("crv", &crv); err != nil {
			return vk, fmt.Errorf("key %q: no curve: %w", vk.kid, err)
		}
		vk.crv = crv.String()
	}
	if err := jwk.Export(pub, &vk.raw); err != nil {
		return vk, fmt.Errorf("key %q: %w", vk.kid, err)
	}
	if b, ok := vk.raw.([]byte); ok && len(b) == 0 {
		return vk, fmt.Errorf("key %q: empty symmetric key", vk.kid)
	}
	if vk.alg != "" && supportedAlgs[vk.alg].family != vk.kty {
		return vk, fmt.Errorf("key %q: alg %q does not fit its key type", vk.kid, vk.alg)
	}
	return vk, nil
}

// Len returns the number of usable keys.
func (s *KeySet) Len() int {
	if s == nil {
		return 0
	}
	return len(s.keys)
}

// HasKeyID reports whether a key with this kid is in the set. Keys without
// a kid match any kid, as in Envoy, so a set holding one counts as having
// every kid.
func (s *KeySet) HasKeyID(kid string) bool {
	if s == nil {
		return false
	}
	for i := range s.keys {
		if s.keys[i].kid == "" || s.keys[i].kid == kid {
			return true
		}
	}
	return false
}

// candidate reports whether k may verify a token with this kid and alg,
// following Envoy: a kid on both sides must be equal, an alg on the key
// must equal the token's, and the key type (and curve) must be the one the
// algorithm is defined for.
func (k *verifyKey) candidate(kid string, spec algSpec, alg string) bool {
	if kid != "" && k.kid != "" && k.kid != kid {
		return false
	}
	if k.alg != "" && k.alg != alg {
		return false
	}
	if k.kty != spec.family {
		return false
	}
	return spec.crv == "" || spec.crv == k.crv
}
