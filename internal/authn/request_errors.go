package authn

import (
	"errors"
	"fmt"
)

// ErrInvalidToken matches (with errors.Is) every error Authenticate returns
// for a request that carries a JWT which does not verify. The caller must
// reject such a request: Istio never lets an invalid token through, even
// when no AuthorizationPolicy asks for a request principal.
var ErrInvalidToken = errors.New("authn: invalid JWT")

// Reason says why a token was refused. Its String is the text Envoy's
// jwt_authn filter (and so an Istio sidecar) puts in the body of its 401 or
// 403 reply, so clients and scripts written against Istio see the same
// words.
type Reason uint8

// Reasons, in the order Authenticate checks them.
const (
	ReasonBadFormat       Reason = iota + 1 // not three base64url parts, or too large
	ReasonBadHeader                         // header not base64url JSON
	ReasonUnsupportedAlg                    // alg missing, "none", or not one Envoy accepts
	ReasonBadPayload                        // payload not base64url JSON, or ill-typed registered claims
	ReasonUnknownIssuer                     // iss matches no jwtRule at the token's location
	ReasonExpired                           // exp is in the past, beyond the clock skew
	ReasonNotYetValid                       // nbf is in the future, beyond the clock skew
	ReasonAudience                          // no aud among the rule's audiences
	ReasonKeysUnavailable                   // the rule's JWKS could not be fetched, ever
	ReasonNoKey                             // no key in the JWKS matches kid and alg
	ReasonBadSignature                      // a matching key does not verify the signature
)

// String returns Envoy's response body for r.
func (r Reason) String() string {
	switch r {
	case ReasonBadFormat:
		return "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"
	case ReasonBadHeader:
		return "Jwt header is an invalid JSON"
	case ReasonUnsupportedAlg:
		return "Jwt header [alg] is not supported"
	case ReasonBadPayload:
		return "Jwt payload is an invalid JSON"
	case ReasonUnknownIssuer:
		return "Jwt issuer is not configured"
	case ReasonExpired:
		return "Jwt is expired"
	case ReasonNotYetValid:
		return "Jwt not yet valid"
	case ReasonAudience:
		return "Audiences in Jwt are not allowed"
	case ReasonKeysUnavailable:
		return "Jwks remote fetch is failed"
	case ReasonNoKey:
		return "Jwks doesn't have key to match kid or alg from Jwt"
	case ReasonBadSignature:
		return "Jwt verification fails"
	default:
		return "Jwt verification fails"
	}
}

// TokenError is the error Authenticate returns for a request with an
// invalid token. It never holds the token itself, so it is safe to log.
type TokenError struct {
	Reason Reason
	// Location is where the token was found, e.g. `header "Authorization"`.
	Location string
	// Issuer is the token's (unverified) iss claim, when it could be read.
	Issuer string
	// Policy is "NAMESPACE/NAME" of the RequestAuthentication whose rule
	// refused the token; empty when no rule claimed it (unknown issuer,
	// malformed token).
	Policy string
	// RuleIndex is the position of that rule in the policy's jwtRules,
	// meaningful only when Policy is set.
	RuleIndex int
	// Err is the underlying cause, if any.
	Err error
}

// Error implements error.
func (e *TokenError) Error() string {
	msg := "authn: JWT from " + e.Location
	if e.Policy != "" {
		msg += fmt.Sprintf(" (policy %s jwtRules[%d])", e.Policy, e.RuleIndex)
	}
	if e.Issuer != "" {
		msg += fmt.Sprintf(" issued by %q", e.Issuer)
	}
	msg += ": " + e.Reason.String()
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns the underlying cause.
func (e *TokenError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrInvalidToken) true for every TokenError.
func (e *TokenError) Is(target error) bool { return target == ErrInvalidToken }

// StatusCode is the HTTP status an Istio sidecar answers with: 403 when
// only the audience is wrong (Envoy treats that as "authenticated but not
// allowed"), 401 otherwise.
func (e *TokenError) StatusCode() int {
	if e.Reason == ReasonAudience {
		return 403
	}
	return 401
}

// Body is the response body an Istio sidecar sends: Envoy's text for the
// reason, with no detail that could help an attacker.
func (e *TokenError) Body() string { return e.Reason.String() }
