package authn

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jws"
)

// parsedToken is a compact JWS decoded but not verified: everything in it
// is attacker-controlled until a key has verified the signature.
type parsedToken struct {
	raw  string // the token as sent; "" once a verifiedToken holds pt
	alg  string
	spec algSpec
	kid  string

	claims        map[string]any // numbers are json.Number
	iss, sub, azp string
	aud           []string
	exp, nbf      float64 // seconds since the epoch
	hasExp        bool
	hasNbf        bool
}

// parseToken decodes tok, bounded by maxSize, and checks the shape of its
// header and registered claims. It does not verify anything.
func parseToken(tok string, maxSize int) (*parsedToken, Reason, error) {
	if len(tok) > maxSize {
		return nil, ReasonBadFormat, fmt.Errorf("token of %d bytes exceeds %d", len(tok), maxSize)
	}
	h, rest, ok1 := strings.Cut(tok, ".")
	payload, sig, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.Contains(sig, ".") || h == "" || payload == "" {
		return nil, ReasonBadFormat, nil
	}
	pt := &parsedToken{raw: tok}

	hb, err := decodeSegment(h)
	if err != nil {
		return nil, ReasonBadHeader, fmt.Errorf("header: %w", err)
	}
	var hdr struct {
		Alg any `json:"alg"`
		Kid any `json:"kid"`
	}
	if err := json.Unmarshal(hb, &hdr); err != nil {
		return nil, ReasonBadHeader, errors.New("header is not a JSON object")
	}
	alg, ok := hdr.Alg.(string)
	if !ok {
		return nil, ReasonUnsupportedAlg, errors.New("alg is missing or not a string")
	}
	spec, ok := supportedAlgs[alg]
	if !ok {
		return nil, ReasonUnsupportedAlg, fmt.Errorf("alg %q", truncate(alg))
	}
	pt.alg, pt.spec = alg, spec
	switch kid := hdr.Kid.(type) {
	case nil:
	case string:
		pt.kid = kid
	default:
		return nil, ReasonBadHeader, errors.New("kid is not a string")
	}

	pb, err := decodeSegment(payload)
	if err != nil {
		return nil, ReasonBadPayload, fmt.Errorf("payload: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(pb))
	dec.UseNumber()
	if err := dec.Decode(&pt.claims); err != nil || pt.claims == nil {
		return nil, ReasonBadPayload, errors.New("payload is not a JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, ReasonBadPayload, errors.New("payload has trailing data")
	}
	if err := pt.readRegisteredClaims(); err != nil {
		return nil, ReasonBadPayload, err
	}
	return pt, 0, nil
}

// decodeSegment decodes one base64url part, tolerating the padding some
// issuers add.
func decodeSegment(s string) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		return nil, errors.New("invalid base64url")
	}
	return b, nil
}

func (pt *parsedToken) readRegisteredClaims() error {
	var err error
	if pt.iss, err = stringClaim(pt.claims, "iss"); err != nil {
		return err
	}
	if pt.sub, err = stringClaim(pt.claims, "sub"); err != nil {
		return err
	}
	if pt.azp, err = stringClaim(pt.claims, "azp"); err != nil {
		return err
	}
	switch aud := pt.claims["aud"].(type) {
	case nil:
	case string:
		pt.aud = []string{aud}
	case []any:
		pt.aud = make([]string, 0, len(aud))
		for _, a := range aud {
			s, ok := a.(string)
			if !ok {
				return errors.New("aud is not a string or a list of strings")
			}
			pt.aud = append(pt.aud, s)
		}
	default:
		return errors.New("aud is not a string or a list of strings")
	}
	if pt.exp, pt.hasExp, err = timeClaim(pt.claims, "exp"); err != nil {
		return err
	}
	if pt.nbf, pt.hasNbf, err = timeClaim(pt.claims, "nbf"); err != nil {
		return err
	}
	return nil
}

func stringClaim(claims map[string]any, name string) (string, error) {
	switch v := claims[name].(type) {
	case nil:
		return "", nil
	case string:
		return v, nil
	default:
		return "", fmt.Errorf("%s is not a string", name)
	}
}

func timeClaim(claims map[string]any, name string) (float64, bool, error) {
	v, present := claims[name]
	if !present {
		return 0, false, nil
	}
	n, ok := v.(json.Number)
	if !ok {
		return 0, false, fmt.Errorf("%s is not a number", name)
	}
	f, err := n.Float64()
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, false, fmt.Errorf("%s is not a valid time", name)
	}
	return f, true, nil
}

// checkTime applies exp and nbf with Envoy's leeway: expired when now is
// past exp+skew, not yet valid when nbf is past now+skew. A token without
// exp does not expire (Istio does not set Envoy's require_expiration).
func (pt *parsedToken) checkTime(now time.Time, skew time.Duration) Reason {
	t := float64(now.UnixNano()) / 1e9
	s := skew.Seconds()
	if pt.hasExp && t > pt.exp+s {
		return ReasonExpired
	}
	if pt.hasNbf && pt.nbf > t+s {
		return ReasonNotYetValid
	}
	return 0
}

// audienceAllowed reports whether one of the token's audiences is among
// want; an empty want allows any (Istio's audiences default).
func (pt *parsedToken) audienceAllowed(want []string) bool {
	if len(want) == 0 {
		return true
	}
	for _, a := range pt.aud {
		for _, w := range want {
			if a == w {
				return true
			}
		}
	}
	return false
}

// verify checks the signature of pt against the keys of ks that fit its kid
// and alg. The cryptography is jwx's; which key may be tried with which
// algorithm is decided here (see verifyKey.candidate), so that the alg
// header can never make a key be used as another type of key.
func (ks *KeySet) verify(pt *parsedToken) (Reason, error) {
	var compact []byte
	matched := false
	var lastErr error
	for i := range ks.keys {
		k := &ks.keys[i]
		if !k.candidate(pt.kid, pt.spec, pt.alg) {
			continue
		}
		if compact == nil {
			compact = []byte(pt.raw)
		}
		matched = true
		if _, err := jws.VerifyCompactFast(k.raw, compact, pt.spec.alg); err != nil {
			lastErr = err
			continue
		}
		return 0, nil
	}
	if !matched {
		return ReasonNoKey, fmt.Errorf("no key for kid %q and alg %s", truncate(pt.kid), pt.alg)
	}
	return ReasonBadSignature, lastErr
}

// truncate keeps attacker-chosen strings short in error messages.
func truncate(s string) string {
	const max = 64
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}
