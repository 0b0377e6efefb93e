package authn

import (
	"context"
	"encoding/json"
	"strings"
	"time"
)

// Result is the outcome of request authentication for a request that may
// proceed. Principal, Audiences, Presenter and Claims are what
// AuthorizationPolicy matches as requestPrincipals and request.auth.*; the
// header changes are what Istio's sidecar applies before forwarding.
type Result struct {
	// Authenticated is true when the request carried a valid token; false
	// when it carried none (Istio lets it through: an AuthorizationPolicy
	// must require requestPrincipals to refuse it).
	Authenticated bool
	// Principal is "ISS/SUB", Istio's request principal.
	Principal string
	Issuer    string
	Subject   string
	// Audiences is the token's aud claim, as a list.
	Audiences []string
	// Presenter is the token's azp claim.
	Presenter string
	// Claims is the token's payload: nested objects are map[string]any,
	// lists []any, numbers json.Number. The claims "scope", "permission"
	// and the rule's spaceDelimitedClaims are split on whitespace into a
	// []any of strings, as Istio does, so that authorization can match one
	// scope of "read write".
	//
	// Claims and Audiences are read-only: the policy caches verified
	// tokens, and every Result for the same token shares them, across
	// goroutines.
	Claims map[string]any
	// Token is the raw token that was verified.
	Token string
	// Policy is "NAMESPACE/NAME" of the RequestAuthentication whose rule
	// verified the token.
	Policy string

	// SetHeaders are headers to set (replacing any the client sent) on the
	// request forwarded to the application: outputPayloadToHeader and
	// outputClaimToHeaders.
	SetHeaders []HeaderValue
	// RemoveHeaders are headers to delete before forwarding: those the
	// token came in, unless the rule has forwardOriginalToken. A token in
	// a query parameter or a cookie is left in place, as Envoy does.
	RemoveHeaders []string
}

// HeaderValue is one header to set on the forwarded request.
type HeaderValue struct {
	Name  string // canonical MIME form
	Value string
}

// Authenticate decides whether r may proceed as far as request
// authentication goes, with Istio's rules:
//
//   - a request without a token at any configured location proceeds,
//     unauthenticated (the zero Result, nil error);
//   - a request with a token proceeds only if every token it carries is
//     valid for a rule: the token's issuer must be the issuer of a rule
//     that reads the location it was found at ("the issuer picks the
//     rule"), it must be within its validity (exp, nbf, with the policy's
//     clock skew), carry one of the rule's audiences when the rule lists
//     some, and be signed by a key of the rule's key set with an algorithm
//     that fits that key's type;
//   - otherwise the returned error is a *TokenError (errors.Is
//     ErrInvalidToken) and the caller must answer with its StatusCode and
//     Body.
//
// Istio leaves requests with several tokens undefined; Authenticate refuses
// the request if any of them is invalid (never less strict than one token
// alone) and takes the principal from the first valid one, in the order of
// the policy's locations.
//
// Authenticate is pure but for keys.Keys, called for rules whose keys are
// not inline (it may wait on a first JWKS fetch, bounded by the rule's
// timeout and ctx); keys may be nil when every rule's keys are inline. now
// is the time tokens are checked against.
//
// A token the policy has verified before skips decoding and the signature
// check, but not the checks whose outcome can change: exp and nbf against
// now, the rule its issuer and location pick, and the rule's current key
// set (a JWKS refresh or rotation sends the token through full
// verification again).
func (p *RequestPolicy) Authenticate(ctx context.Context, r RequestView, keys KeySource, now time.Time) (Result, error) {
	if p == nil || len(p.rules) == 0 {
		return Result{}, nil
	}
	found := p.extract(r)
	var res Result
	for _, ft := range found {
		one, err := p.authenticateToken(ctx, ft, keys, now)
		if err != nil {
			return Result{}, err
		}
		if !res.Authenticated {
			res = one
			continue
		}
		res.SetHeaders = append(res.SetHeaders, one.SetHeaders...)
		res.RemoveHeaders = append(res.RemoveHeaders, one.RemoveHeaders...)
	}
	return res, nil
}

// authenticateToken verifies one token against the rules that may claim it.
// A token the policy has verified before is answered from its cache when
// nothing that decided the verdict has changed (see cachedResult); a
// token that fails is never cached, so it is verified, and fails, every
// time.
func (p *RequestPolicy) authenticateToken(ctx context.Context, ft foundToken, keys KeySource, now time.Time) (Result, error) {
	d, cacheable := p.tokens.digest(ft.token)
	if cacheable {
		if res, ok := p.cachedResult(ctx, d, ft, keys, now); ok {
			return res, nil
		}
	}
	where := p.locations[ft.locs[0]].String()
	pt, reason, err := parseToken(ft.token, p.maxToken)
	if reason != 0 {
		return Result{}, &TokenError{Reason: reason, Location: where, Err: err}
	}
	var first *TokenError
	for _, rule := range p.rules {
		if rule.issuer != pt.iss || !rule.reads(ft.locs) {
			continue
		}
		ks, terr := p.checkRule(ctx, rule, pt, keys, now)
		if terr != nil {
			if first == nil {
				terr.Location, terr.Issuer = where, truncate(pt.iss)
				first = terr
			}
			continue
		}
		v := newVerifiedToken(rule, ks, pt)
		if cacheable {
			p.tokens.put(d, v)
		}
		return p.result(v, ft), nil
	}
	if first != nil {
		return Result{}, first
	}
	return Result{}, &TokenError{Reason: ReasonUnknownIssuer, Location: where, Issuer: truncate(pt.iss)}
}

// reads reports whether the rule reads one of the locations locs.
func (r *Rule) reads(locs []int) bool {
	for _, l := range locs {
		if r.readsLoc(l) {
			return true
		}
	}
	return false
}

// readsLoc reports whether the rule reads location l.
func (r *Rule) readsLoc(l int) bool {
	for _, mine := range r.locations {
		if mine == l {
			return true
		}
	}
	return false
}

// checkRule checks pt against one rule, in Envoy's order: validity times,
// audiences, then keys and signature. It returns the key set that verified
// the signature.
func (p *RequestPolicy) checkRule(ctx context.Context, rule *Rule, pt *parsedToken, keys KeySource, now time.Time) (*KeySet, *TokenError) {
	fail := func(r Reason, err error) *TokenError {
		return &TokenError{Reason: r, Policy: rule.policy, RuleIndex: rule.index, Err: err}
	}
	if r := pt.checkTime(now, p.skew); r != 0 {
		return nil, fail(r, nil)
	}
	if !pt.audienceAllowed(rule.audiences) {
		return nil, fail(ReasonAudience, nil)
	}
	ks := rule.inline
	switch {
	case rule.inlineErr != nil:
		return nil, fail(ReasonNoKey, rule.inlineErr)
	case ks == nil && keys == nil:
		return nil, fail(ReasonKeysUnavailable, errNoKeySource)
	case ks == nil:
		var err error
		if ks, err = keys.Keys(ctx, rule, pt.kid); err != nil || ks == nil {
			return nil, fail(ReasonKeysUnavailable, err)
		}
	}
	if r, err := ks.verify(pt); r != 0 {
		return nil, fail(r, err)
	}
	return ks, nil
}

// result builds the Result of a token v says was verified, found as ft.
// Everything that depends on the request (the token as sent, the headers
// to remove) comes from ft; the rest is v's, so a cache hit and a full
// verification give the same Result.
func (p *RequestPolicy) result(v *verifiedToken, ft foundToken) Result {
	rule, pt := v.rule, v.pt
	res := Result{
		Authenticated: true,
		Principal:     v.principal,
		Issuer:        pt.iss,
		Subject:       pt.sub,
		Audiences:     pt.aud,
		Presenter:     pt.azp,
		Claims:        pt.claims,
		Token:         ft.token,
		Policy:        rule.policy,
	}
	if rule.payloadHeader != "" || len(v.claimHeaders) > 0 {
		res.SetHeaders = make([]HeaderValue, 0, 1+len(v.claimHeaders))
		if rule.payloadHeader != "" {
			res.SetHeaders = append(res.SetHeaders, HeaderValue{Name: rule.payloadHeader, Value: payloadSegment(ft.token)})
		}
		res.SetHeaders = append(res.SetHeaders, v.claimHeaders...)
	}
	if !rule.forward {
		for _, l := range ft.locs {
			loc := p.locations[l]
			if loc.kind == locHeader && rule.readsLoc(l) {
				res.RemoveHeaders = append(res.RemoveHeaders, loc.name)
			}
		}
	}
	return res
}

// payloadSegment returns the payload part of a compact JWS as sent, for
// outputPayloadToHeader.
func payloadSegment(tok string) string {
	_, rest, _ := strings.Cut(tok, ".")
	payload, _, _ := strings.Cut(rest, ".")
	return payload
}

// lookupClaim follows a dotted claim path through nested objects.
func lookupClaim(claims map[string]any, path []string) any {
	var cur any = claims
	for _, k := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[k]
	}
	return cur
}

// claimHeaderValue renders a claim for outputClaimToHeaders: strings,
// numbers and booleans, as Envoy supports; nothing else. A value with
// control characters is dropped: it would let a token's issuer smuggle
// header lines (CR LF) to the application.
func claimHeaderValue(v any) (string, bool) {
	var s string
	switch v := v.(type) {
	case string:
		s = v
	case json.Number:
		s = v.String()
	case bool:
		if v {
			s = "true"
		} else {
			s = "false"
		}
	default:
		return "", false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return "", false
		}
	}
	return s, true
}

// splitClaim replaces the string claim at path by the list of its
// whitespace-separated words.
func splitClaim(claims map[string]any, path []string) {
	m := claims
	for _, k := range path[:len(path)-1] {
		next, ok := m[k].(map[string]any)
		if !ok {
			return
		}
		m = next
	}
	last := path[len(path)-1]
	s, ok := m[last].(string)
	if !ok {
		return
	}
	words := strings.Fields(s)
	list := make([]any, len(words))
	for i, w := range words {
		list[i] = w
	}
	m[last] = list
}
