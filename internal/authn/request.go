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
func (p *RequestPolicy) authenticateToken(ctx context.Context, ft foundToken, keys KeySource, now time.Time) (Result, error) {
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
		if terr := p.checkRule(ctx, rule, pt, keys, now); terr != nil {
			if first == nil {
				terr.Location, terr.Issuer = where, truncate(pt.iss)
				first = terr
			}
			continue
		}
		return p.result(rule, pt, ft), nil
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
// audiences, then keys and signature.
func (p *RequestPolicy) checkRule(ctx context.Context, rule *Rule, pt *parsedToken, keys KeySource, now time.Time) *TokenError {
	fail := func(r Reason, err error) *TokenError {
		return &TokenError{Reason: r, Policy: rule.policy, RuleIndex: rule.index, Err: err}
	}
	if r := pt.checkTime(now, p.skew); r != 0 {
		return fail(r, nil)
	}
	if !pt.audienceAllowed(rule.audiences) {
		return fail(ReasonAudience, nil)
	}
	ks := rule.inline
	switch {
	case rule.inlineErr != nil:
		return fail(ReasonNoKey, rule.inlineErr)
	case ks == nil && keys == nil:
		return fail(ReasonKeysUnavailable, errNoKeySource)
	case ks == nil:
		var err error
		if ks, err = keys.Keys(ctx, rule, pt.kid); err != nil || ks == nil {
			return fail(ReasonKeysUnavailable, err)
		}
	}
	if r, err := ks.verify(pt); r != 0 {
		return fail(r, err)
	}
	return nil
}

// result builds the Result of a token verified by rule.
func (p *RequestPolicy) result(rule *Rule, pt *parsedToken, ft foundToken) Result {
	res := Result{
		Authenticated: true,
		Principal:     pt.iss + "/" + pt.sub,
		Issuer:        pt.iss,
		Subject:       pt.sub,
		Audiences:     pt.aud,
		Presenter:     pt.azp,
		Claims:        pt.claims,
		Token:         pt.raw,
		Policy:        rule.policy,
	}
	if rule.payloadHeader != "" {
		res.SetHeaders = append(res.SetHeaders, HeaderValue{Name: rule.payloadHeader, Value: pt.payloadB64})
	}
	for _, ch := range rule.claimHeaders {
		if v, ok := claimHeaderValue(lookupClaim(pt.claims, ch.claim)); ok {
			res.SetHeaders = append(res.SetHeaders, HeaderValue{Name: ch.header, Value: v})
		}
	}
	if !rule.forward {
		for _, l := range ft.locs {
			loc := p.locations[l]
			if loc.kind == locHeader && rule.readsLoc(l) {
				res.RemoveHeaders = append(res.RemoveHeaders, loc.name)
			}
		}
	}
	// Split after the claim headers, which carry claims as sent.
	for _, path := range rule.spaceClaims {
		splitClaim(pt.claims, path)
	}
	return res
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
