package authn

import (
	"fmt"
	"net/textproto"
	"slices"
	"strings"
	"time"

	security "istio.io/api/security/v1beta1"

	"github.com/zmesh/zmesh/internal/config"
)

// Defaults of RequestOptions, Istio's and Envoy's where they have one.
const (
	// DefaultClockSkew is Envoy jwt_authn's clock_skew_seconds, which
	// Istio leaves at its default: exp and nbf are checked with 60 s of
	// leeway.
	DefaultClockSkew = 60 * time.Second
	// DefaultMaxTokenSize bounds the tokens Authenticate will look at; a
	// bigger one is refused without being decoded. Envoy's header limit
	// (60 KiB) is of the same order.
	DefaultMaxTokenSize = 64 << 10
	// DefaultJWKSTimeout is JWTRule.timeout's default: how long a JWKS
	// fetch may take.
	DefaultJWKSTimeout = 5 * time.Second
)

// defaultSpaceDelimitedClaims are split on whitespace for authorization
// whatever the rule says, as in Istio.
var defaultSpaceDelimitedClaims = []string{"scope", "permission"}

// RequestOptions tunes CompileRequest. The zero value gives Istio's
// behaviour.
type RequestOptions struct {
	// ClockSkew is the leeway on exp and nbf; 0 means DefaultClockSkew,
	// a negative value means none.
	ClockSkew time.Duration
	// MaxTokenSize is the largest token, in bytes, that is decoded; 0 means
	// DefaultMaxTokenSize.
	MaxTokenSize int
	// TokenCacheSize is how many verified tokens the policy remembers, so
	// that a token sent again is not decoded and its signature not checked
	// again; 0 means DefaultTokenCacheSize, a negative value turns the
	// cache off. The cache changes how fast a verdict comes, never which.
	TokenCacheSize int
}

// RequestPolicy is the request authentication in force for one workload:
// every jwtRule of the RequestAuthentications that select it, compiled
// once per config push. Its rules are immutable; its one mutable part is a
// bounded cache of the tokens it has verified, internally synchronized, so
// a policy is safe for concurrent use. The cache lives and dies with the
// policy: a config push compiles a new, empty one, and a token verified
// under one policy never counts as verified under another. A nil or empty
// policy authenticates nothing and lets every request through
// unauthenticated, as a workload without RequestAuthentication does in
// Istio (tokens are then not even looked at).
type RequestPolicy struct {
	rules     []*Rule
	locations []location // distinct locations of all rules, in rule order
	skew      time.Duration
	maxToken  int
	warnings  []string
	tokens    *tokenCache // nil: no caching
	outputs   []string    // see OutputHeaders
}

// OutputHeaders returns the names, in canonical MIME form, of the headers
// the policy's rules set from a verified token (outputPayloadToHeader,
// outputClaimToHeaders). A request must reach authorization and the
// application with these headers only as the policy set them: the caller
// removes them from every request before Authenticate, whatever its
// outcome, as Envoy's jwt_authn filter does, or a client without a token
// (or with a valid token that lacks the claim) could send its own
// "x-jwt-sub: admin". The slice is computed once per policy and shared:
// do not modify it.
func (p *RequestPolicy) OutputHeaders() []string {
	if p == nil {
		return nil
	}
	return p.outputs
}

// Rule is one compiled jwtRule. Its accessors serve KeySource
// implementations; everything else is internal to the decision.
type Rule struct {
	policy    string // NAMESPACE/NAME
	index     int    // position in the policy's jwtRules
	issuer    string
	audiences []string
	jwksURI   string
	timeout   time.Duration
	inline    *KeySet // parsed jwks, when given inline
	inlineErr error   // why an inline jwks is unusable; the rule then fails closed

	locations     []int // indexes into RequestPolicy.locations
	forward       bool
	payloadHeader string
	claimHeaders  []claimHeader
	spaceClaims   [][]string // claim paths split on whitespace for authz
}

// Policy returns "NAMESPACE/NAME" of the RequestAuthentication the rule is
// from.
func (r *Rule) Policy() string { return r.policy }

// Index returns the rule's position in its policy's jwtRules.
func (r *Rule) Index() int { return r.index }

// Issuer returns the rule's issuer.
func (r *Rule) Issuer() string { return r.issuer }

// JWKSURI returns the rule's jwksUri; "" for inline keys or when the keys
// are to be found by OpenID discovery from the issuer.
func (r *Rule) JWKSURI() string { return r.jwksURI }

// Timeout returns how long a fetch of the rule's keys may take.
func (r *Rule) Timeout() time.Duration { return r.timeout }

// Inline reports whether the rule's keys were given inline (jwks), in which
// case no KeySource is consulted.
func (r *Rule) Inline() bool { return r.inline != nil || r.inlineErr != nil }

// claimHeader is one outputClaimToHeaders entry.
type claimHeader struct {
	header string   // canonical header name
	claim  []string // dotted path, split
}

// locKind says where in a request a token is looked for.
type locKind uint8

const (
	locHeader locKind = iota
	locParam
	locCookie
)

// location is one place a token may be: a header (with an optional value
// prefix such as "Bearer "), a query parameter or a cookie.
type location struct {
	kind   locKind
	name   string // canonical header name, parameter or cookie name
	prefix string
}

func (l location) String() string {
	switch l.kind {
	case locParam:
		return fmt.Sprintf("query parameter %q", l.name)
	case locCookie:
		return fmt.Sprintf("cookie %q", l.name)
	default:
		return fmt.Sprintf("header %q", l.name)
	}
}

// Istio's (Envoy's) default token locations, used by a rule that names none.
var defaultLocations = []location{
	{kind: locHeader, name: "Authorization", prefix: "Bearer "},
	{kind: locParam, name: "access_token"},
}

// CompileRequest compiles the RequestAuthentications in ras into the policy
// of one workload. The caller selects them (SelectRequest does it with
// Istio's rules); resources of other kinds are skipped, so a selected
// snapshot list may be passed whole. Rules keep their order: the order of
// ras, then of each spec's jwtRules.
//
// A rule whose inline jwks cannot be used compiles into a rule that refuses
// every token of its issuer, as istiod does by substituting a key set that
// matches nothing; Warnings says so. Only a resource whose Spec is not a
// RequestAuthentication is an error.
func CompileRequest(ras []config.Resource, opts RequestOptions) (*RequestPolicy, error) {
	p := &RequestPolicy{skew: opts.ClockSkew, maxToken: opts.MaxTokenSize}
	switch {
	case p.skew == 0:
		p.skew = DefaultClockSkew
	case p.skew < 0:
		p.skew = 0
	}
	if p.maxToken <= 0 {
		p.maxToken = DefaultMaxTokenSize
	}
	for _, r := range ras {
		if r.Kind != config.KindRequestAuthentication {
			continue
		}
		spec, ok := r.Spec.(*security.RequestAuthentication)
		if !ok {
			return nil, fmt.Errorf("authn: RequestAuthentication %s: spec is %T", r.Key(), r.Spec)
		}
		for i, jr := range spec.GetJwtRules() {
			rule, err := p.compileRule(r.Key(), i, jr)
			if err != nil {
				return nil, fmt.Errorf("authn: RequestAuthentication %s: jwtRules[%d]: %w", r.Key(), i, err)
			}
			p.rules = append(p.rules, rule)
		}
	}
	p.outputs = outputHeaders(p.rules, p.locations)
	cacheSize := opts.TokenCacheSize
	if cacheSize == 0 {
		cacheSize = DefaultTokenCacheSize
	}
	if len(p.rules) > 0 {
		p.tokens = newTokenCache(cacheSize, p.maxToken)
	}
	return p, nil
}

// outputHeaders lists, once each, the headers the rules write from a
// verified token (outputPayloadToHeader, outputClaimToHeaders), leaving
// out any a rule reads tokens from: removing those before verification
// would drop the token itself.
func outputHeaders(rules []*Rule, locs []location) []string {
	var names []string
	add := func(name string) {
		if name == "" || slices.Contains(names, name) {
			return
		}
		for _, l := range locs {
			if l.kind == locHeader && l.name == name {
				return
			}
		}
		names = append(names, name)
	}
	for _, r := range rules {
		add(r.payloadHeader)
		for _, c := range r.claimHeaders {
			add(c.header)
		}
	}
	return names
}

func (p *RequestPolicy) compileRule(policy string, index int, jr *security.JWTRule) (*Rule, error) {
	if jr.GetIssuer() == "" {
		return nil, fmt.Errorf("issuer must be set")
	}
	r := &Rule{
		policy:        policy,
		index:         index,
		issuer:        jr.GetIssuer(),
		audiences:     append([]string(nil), jr.GetAudiences()...),
		jwksURI:       jr.GetJwksUri(),
		timeout:       DefaultJWKSTimeout,
		forward:       jr.GetForwardOriginalToken(),
		payloadHeader: canonicalHeader(jr.GetOutputPayloadToHeader()),
	}
	if t := jr.GetTimeout(); t != nil && t.AsDuration() > 0 {
		r.timeout = t.AsDuration()
	}
	if jwks := jr.GetJwks(); jwks != "" {
		r.inline, r.inlineErr = ParseKeySet([]byte(jwks))
		if r.inlineErr != nil {
			p.warnings = append(p.warnings, fmt.Sprintf(
				"RequestAuthentication %s: jwtRules[%d]: inline jwks unusable, tokens of issuer %q will be rejected: %v",
				policy, index, r.issuer, r.inlineErr))
		}
	}

	var locs []location
	for _, h := range jr.GetFromHeaders() {
		if h.GetName() == "" {
			return nil, fmt.Errorf("fromHeaders: name must be set")
		}
		locs = append(locs, location{kind: locHeader, name: canonicalHeader(h.GetName()), prefix: h.GetPrefix()})
	}
	for _, name := range jr.GetFromParams() {
		if name != "" {
			locs = append(locs, location{kind: locParam, name: name})
		}
	}
	for _, name := range jr.GetFromCookies() {
		if name != "" {
			locs = append(locs, location{kind: locCookie, name: name})
		}
	}
	if len(locs) == 0 {
		locs = defaultLocations
	}
	for _, l := range locs {
		r.locations = append(r.locations, p.addLocation(l))
	}

	for _, o := range jr.GetOutputClaimToHeaders() {
		if o.GetHeader() == "" || o.GetClaim() == "" {
			return nil, fmt.Errorf("outputClaimToHeaders: header and claim must be set")
		}
		r.claimHeaders = append(r.claimHeaders, claimHeader{
			header: canonicalHeader(o.GetHeader()),
			claim:  strings.Split(o.GetClaim(), "."),
		})
	}
	for _, c := range defaultSpaceDelimitedClaims {
		r.spaceClaims = append(r.spaceClaims, []string{c})
	}
	for _, c := range jr.GetSpaceDelimitedClaims() {
		if c != "" {
			r.spaceClaims = append(r.spaceClaims, strings.Split(c, "."))
		}
	}
	return r, nil
}

// addLocation returns the index of l in p.locations, adding it if new. Two
// rules reading the same header with different prefixes are two locations.
func (p *RequestPolicy) addLocation(l location) int {
	for i, have := range p.locations {
		if have == l {
			return i
		}
	}
	p.locations = append(p.locations, l)
	return len(p.locations) - 1
}

// canonicalHeader returns name in the canonical MIME form that net/http
// keys its header maps with ("x-jwt-assertion" -> "X-Jwt-Assertion").
func canonicalHeader(name string) string {
	if name == "" {
		return ""
	}
	return textproto.CanonicalMIMEHeaderKey(name)
}

// Rules returns the compiled rules, in order. The caller must not modify
// them.
func (p *RequestPolicy) Rules() []*Rule {
	if p == nil {
		return nil
	}
	return p.rules
}

// Warnings returns what CompileRequest accepted but the operator should
// hear about (an unusable inline jwks, which fails closed).
func (p *RequestPolicy) Warnings() []string {
	if p == nil {
		return nil
	}
	return p.warnings
}
