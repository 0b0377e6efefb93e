package authn

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	security "istio.io/api/security/v1beta1"

	"github.com/zmesh/zmesh/internal/config"
)

// compileWith compiles ras with opts.
func compileWith(t testing.TB, opts RequestOptions, ras ...config.Resource) *RequestPolicy {
	t.Helper()
	p, err := CompileRequest(ras, opts)
	if err != nil {
		t.Fatalf("CompileRequest: %v", err)
	}
	return p
}

// reason returns why err refused a token, 0 for no error.
func reason(t testing.TB, err error) Reason {
	t.Helper()
	if err == nil {
		return 0
	}
	var te *TokenError
	if !errors.As(err, &te) {
		t.Fatalf("err = %v, want a TokenError", err)
	}
	return te.Reason
}

// hit asks p's cache alone about the one token of req, as Authenticate
// does before verifying: ok reports that the cache answered.
func hit(t testing.TB, p *RequestPolicy, req RequestView, keys KeySource, now time.Time) (Result, bool) {
	t.Helper()
	found := p.extract(req)
	if len(found) != 1 {
		t.Fatalf("found %d tokens, want 1", len(found))
	}
	d, ok := p.tokens.digest(found[0].token)
	if !ok {
		return Result{}, false
	}
	return p.cachedResult(context.Background(), d, found[0], keys, now)
}

// TestTokenCacheHitMatchesMiss: a token answered from the cache gets the
// Result a policy that never saw it computes, headers included, wherever
// the token was found the first time.
func TestTokenCacheHitMatchesMiss(t *testing.T) {
	s := ecSigner(t)
	jwks := string(jwksJSON(t, s))
	tok := s.sign(t, claims(issuer, map[string]any{
		"scope":  "read write",
		"org":    map[string]any{"team": "core", "roles": "admin audit"},
		"groups": []string{"dev", "ops"},
		"level":  3,
	}))
	outputs := func(r *security.JWTRule) *security.JWTRule {
		r.Issuer, r.Jwks = issuer, jwks
		r.OutputPayloadToHeader = "x-jwt-payload"
		r.OutputClaimToHeaders = []*security.ClaimToHeader{
			{Header: "x-scope", Claim: "scope"}, // split for authz, sent as is
			{Header: "x-roles", Claim: "org.roles"},
			{Header: "x-team", Claim: "org.team"},
			{Header: "x-level", Claim: "level"},
		}
		r.SpaceDelimitedClaims = []string{"org.roles"}
		return r
	}
	h := func(k, v string) RequestView { return RequestView{Header: map[string][]string{k: {v}}} }
	tests := []struct {
		name        string
		rule        *security.JWTRule
		first, then RequestView
	}{
		{"bearer header, then the same", outputs(&security.JWTRule{}), bearer(tok), bearer(tok)},
		{"bearer header, then the query parameter", outputs(&security.JWTRule{}), bearer(tok), RequestView{RawQuery: "access_token=" + tok}},
		{"query parameter, then the bearer header", outputs(&security.JWTRule{}), RequestView{RawQuery: "access_token=" + tok}, bearer(tok)},
		{"both default locations at once", outputs(&security.JWTRule{}), bearer(tok), RequestView{Header: bearer(tok).Header, RawQuery: "access_token=" + tok}},
		{"forwardOriginalToken", outputs(&security.JWTRule{ForwardOriginalToken: true}), bearer(tok), bearer(tok)},
		{"custom header with a prefix, then a cookie", outputs(&security.JWTRule{
			FromHeaders: []*security.JWTHeader{{Name: "x-jwt", Prefix: "Token "}},
			FromCookies: []string{"session"},
		}), h("X-Jwt", "Token "+tok), h("Cookie", "session="+tok)},
		{"no output headers", &security.JWTRule{Issuer: issuer, Jwks: jwks}, bearer(tok), bearer(tok)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := compile(t, ra("foo", "jwt", nil, tt.rule))
			if _, err := authenticate(p, tt.first, nil); err != nil {
				t.Fatalf("first request: %v", err)
			}
			if n := p.tokens.len(); n != 1 {
				t.Fatalf("cache holds %d tokens after one success, want 1", n)
			}
			want, err := authenticate(compile(t, ra("foo", "jwt", nil, tt.rule)), tt.then, nil)
			if err != nil {
				t.Fatalf("uncached policy: %v", err)
			}
			cached, ok := hit(t, p, tt.then, nil, testNow)
			if !ok {
				t.Fatal("cache did not answer for a token it holds")
			}
			if !reflect.DeepEqual(cached, want) {
				t.Fatalf("cache hit:\n%+v\nfull verification:\n%+v", cached, want)
			}
			got, err := authenticate(p, tt.then, nil)
			if err != nil || !reflect.DeepEqual(got, want) {
				t.Fatalf("second request: %+v (err %v)\nwant %+v", got, err, want)
			}
		})
	}

	// The spec the comparison above rests on: headers carry the claims as
	// sent, authorization gets them split.
	p := compile(t, ra("foo", "jwt", nil, outputs(&security.JWTRule{})))
	for i := range 2 {
		res, err := authenticate(p, bearer(tok), nil)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(res.SetHeaders[1:3], []HeaderValue{{"X-Scope", "read write"}, {"X-Roles", "admin audit"}}) {
			t.Errorf("request %d: SetHeaders = %v", i, res.SetHeaders)
		}
		if !reflect.DeepEqual(res.Claims["scope"], []any{"read", "write"}) {
			t.Errorf("request %d: scope = %#v", i, res.Claims["scope"])
		}
	}
}

// TestTokenCacheRechecksTime: exp and nbf are checked against now on every
// request, with the policy's clock skew, however the token was verified.
func TestTokenCacheRechecksTime(t *testing.T) {
	s := ecSigner(t)
	exp := testNow.Add(time.Hour)
	tok := s.sign(t, claims(issuer, map[string]any{"exp": exp.Unix(), "nbf": testNow.Add(-time.Minute).Unix()}))
	tests := []struct {
		name    string
		skew    time.Duration
		advance time.Duration // from testNow, where the token is cached
		want    Reason
	}{
		{"still valid an hour later, within the skew", 0, time.Hour + DefaultClockSkew, 0},
		{"expired while cached", 0, time.Hour + DefaultClockSkew + time.Second, ReasonExpired},
		{"expired while cached, with a policy skew of 5 s", 5 * time.Second, time.Hour + 6*time.Second, ReasonExpired},
		{"the clock moved back before nbf", 0, -time.Minute - DefaultClockSkew - time.Second, ReasonNotYetValid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := compileWith(t, RequestOptions{ClockSkew: tt.skew},
				ra("foo", "jwt", nil, &security.JWTRule{Issuer: issuer, Jwks: string(jwksJSON(t, s))}))
			clock := newFakeClock()
			if _, err := p.Authenticate(context.Background(), bearer(tok), nil, clock.Now()); err != nil {
				t.Fatal(err)
			}
			clock.Advance(tt.advance)
			if _, ok := hit(t, p, bearer(tok), nil, clock.Now()); ok != (tt.want == 0) {
				t.Fatalf("cache answered %v, want %v", ok, tt.want == 0)
			}
			_, err := p.Authenticate(context.Background(), bearer(tok), nil, clock.Now())
			if got := reason(t, err); got != tt.want {
				t.Fatalf("reason %v (%v), want %v", got, err, tt.want)
			}
		})
	}
}

// TestTokenCacheForgedToken: after the real token is cached, a token with
// the same header and payload but another signature is verified, and
// refused, every time; failures are not cached.
func TestTokenCacheForgedToken(t *testing.T) {
	s := ecSigner(t)
	testKeys(t)
	c := claims(issuer, nil)
	real := s.sign(t, c)
	headerPayload := real[:strings.LastIndexByte(real, '.')+1]
	otherKey := signer{s.kid, s.alg, ecKey2}.sign(t, c)
	if !strings.HasPrefix(otherKey, headerPayload) {
		t.Fatal("the forgery must share the real token's header and payload")
	}
	sig := real[len(headerPayload):]
	flipped := []byte(sig)
	if flipped[10] = 'A'; sig[10] == 'A' {
		flipped[10] = 'B'
	}
	tests := []struct {
		name string
		tok  string
		want Reason
	}{
		{"signed by another key under the same kid", otherKey, ReasonBadSignature},
		{"a character of the signature changed", headerPayload + string(flipped), ReasonBadSignature},
		{"the signature removed", headerPayload, ReasonBadSignature},
		{"the payload changed", tamper(real), ReasonBadSignature},
	}
	p := compile(t, ra("foo", "jwt", nil, &security.JWTRule{Issuer: issuer, Jwks: string(jwksJSON(t, s))}))
	if _, err := authenticate(p, bearer(real), nil); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i := range 3 {
				if _, ok := hit(t, p, bearer(tt.tok), nil, testNow); ok {
					t.Fatalf("request %d: the cache answered for a forgery", i)
				}
				_, err := authenticate(p, bearer(tt.tok), nil)
				if got := reason(t, err); got != tt.want {
					t.Fatalf("request %d: reason %v (%v), want %v", i, got, err, tt.want)
				}
			}
			if n := p.tokens.len(); n != 1 {
				t.Fatalf("cache holds %d tokens, want only the real one", n)
			}
		})
	}
	if res, err := authenticate(p, bearer(real), nil); err != nil || res.Token != real {
		t.Fatalf("real token after the forgeries: %+v %v", res, err)
	}
}

// TestTokenCacheScope: a token verified by one policy, or one rule, counts
// for nothing elsewhere: other policies, rules at other locations, and a
// recompiled policy verify it themselves.
func TestTokenCacheScope(t *testing.T) {
	s := ecSigner(t)
	testKeys(t)
	impostorKey := signer{s.kid, s.alg, ecKey2} // same kid, another key
	jwks, otherJWKS := string(jwksJSON(t, s)), string(jwksJSON(t, impostorKey))
	tok := s.sign(t, claims(issuer, nil))
	a := compile(t, ra("foo", "a", nil, &security.JWTRule{Issuer: issuer, Jwks: jwks}))
	if _, err := authenticate(a, bearer(tok), nil); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name       string
		policy     *RequestPolicy
		req        RequestView
		want       Reason
		wantPolicy string
	}{
		{
			name:   "policy B of the same issuer with another JWKS",
			policy: compile(t, ra("foo", "b", nil, &security.JWTRule{Issuer: issuer, Jwks: otherJWKS})),
			req:    bearer(tok), want: ReasonBadSignature,
		},
		{
			name:   "policy B of another issuer",
			policy: compile(t, ra("foo", "b", nil, &security.JWTRule{Issuer: "https://other.example.com", Jwks: jwks})),
			req:    bearer(tok), want: ReasonUnknownIssuer,
		},
		{
			name:   "policy B with audiences the token lacks",
			policy: compile(t, ra("foo", "b", nil, &security.JWTRule{Issuer: issuer, Jwks: jwks, Audiences: []string{"payments"}})),
			req:    bearer(tok), want: ReasonAudience,
		},
		{
			name:   "policy A recompiled by a config push verifies again",
			policy: compile(t, ra("foo", "a", nil, &security.JWTRule{Issuer: issuer, Jwks: jwks})),
			req:    bearer(tok), wantPolicy: "foo/a",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if n := tt.policy.tokens.len(); n != 0 {
				t.Fatalf("a new policy starts with %d cached tokens", n)
			}
			res, err := authenticate(tt.policy, tt.req, nil)
			if got := reason(t, err); got != tt.want || res.Policy != tt.wantPolicy {
				t.Fatalf("reason %v policy %q (%v), want %v %q", got, res.Policy, err, tt.want, tt.wantPolicy)
			}
		})
	}

	// Within one policy: the same token at a location only the other
	// rule of its issuer reads is that rule's to verify.
	h := func(k string) RequestView { return RequestView{Header: map[string][]string{k: {tok}}} }
	two := compile(t,
		ra("foo", "a", nil, &security.JWTRule{Issuer: issuer, Jwks: jwks, FromHeaders: []*security.JWTHeader{{Name: "x-a"}}}),
		ra("foo", "b", nil, &security.JWTRule{Issuer: issuer, Jwks: otherJWKS, FromHeaders: []*security.JWTHeader{{Name: "x-b"}}}),
	)
	if res, err := authenticate(two, h("X-A"), nil); err != nil || res.Policy != "foo/a" {
		t.Fatalf("rule A's location: %+v %v", res, err)
	}
	for i := range 2 {
		if _, err := authenticate(two, h("X-B"), nil); reason(t, err) != ReasonBadSignature {
			t.Fatalf("request %d: rule B's location after rule A cached the token: %v, want %v", i, err, ReasonBadSignature)
		}
	}

	// An earlier rule of the same issuer that refuses the token's audience
	// is passed over from the cache, as verification passes over it.
	ordered := compile(t,
		ra("foo", "first", nil, &security.JWTRule{Issuer: issuer, Jwks: jwks, Audiences: []string{"payments"}}),
		ra("foo", "second", nil, &security.JWTRule{Issuer: issuer, Jwks: jwks}),
	)
	if res, err := authenticate(ordered, bearer(tok), nil); err != nil || res.Policy != "foo/second" {
		t.Fatalf("first request: %+v %v", res, err)
	}
	if res, ok := hit(t, ordered, bearer(tok), nil, testNow); !ok || res.Policy != "foo/second" {
		t.Fatalf("cache: ok %v policy %q, want foo/second", ok, res.Policy)
	}
}

// TestTokenCacheJWKSChange: a cached token counts only while the rule's
// key set is the one that verified it. A refresh sends it through full
// verification, which refuses it once its key is gone from the JWKS.
func TestTokenCacheJWKSChange(t *testing.T) {
	testKeys(t)
	old, rotated := signer{"k1", jwa.ES256(), ecKey1}, signer{"k2", jwa.ES256(), ecKey2}
	tests := []struct {
		name      string
		change    func(*jwksFixture)
		wantCache bool // the cache still answers after the change
		want      Reason
		wantHits  int64
	}{
		{
			name:   "a rotation removes the key",
			change: func(f *jwksFixture) { f.srv.doc.Store(jwksJSON(t, rotated)) },
			want:   ReasonNoKey, wantHits: 2,
		},
		{
			name:   "a rotation keeps the key beside a new one",
			change: func(f *jwksFixture) { f.srv.doc.Store(jwksJSON(t, rotated, old)) },
			want:   0, wantHits: 2,
		},
		{
			name:      "a failed refresh keeps the key set",
			change:    func(f *jwksFixture) { f.srv.down.Store(true) },
			wantCache: true, want: 0, wantHits: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newJWKSFixture(t, jwksJSON(t, old))
			tok := old.sign(t, claims(issuer, nil))
			if r := f.check(t, tok); r != 0 {
				t.Fatal(r)
			}
			if _, ok := hit(t, f.policy, bearer(tok), f.cache, f.clock.Now()); !ok {
				t.Fatal("the cache does not answer for a verified token")
			}
			tt.change(f)
			f.clock.Advance(DefaultJWKSRefreshInterval)
			if _, ok := hit(t, f.policy, bearer(tok), f.cache, f.clock.Now()); ok != tt.wantCache {
				t.Fatalf("after the change the cache answered %v, want %v", ok, tt.wantCache)
			}
			for i := range 2 {
				if r := f.check(t, tok); r != tt.want {
					t.Fatalf("request %d: %v, want %v", i, r, tt.want)
				}
			}
			f.wantHits(t, tt.wantHits)
		})
	}
}

// TestTokenCacheBounded: the cache never holds more than its size, however
// many valid tokens arrive; it keeps recently used ones longest; large
// tokens and a disabled cache keep nothing.
func TestTokenCacheBounded(t *testing.T) {
	hs := signer{"hs-1", jwa.HS256(), []byte("0123456789abcdef0123456789abcdef")}
	rule := &security.JWTRule{Issuer: issuer, Jwks: string(jwksJSON(t, hs))}
	tok := func(i int) string { return hs.sign(t, claims(issuer, map[string]any{"sub": fmt.Sprint("user-", i)})) }
	accept := func(p *RequestPolicy, tok string) {
		t.Helper()
		if res, err := authenticate(p, bearer(tok), nil); err != nil || !res.Authenticated {
			t.Fatalf("res %+v err %v", res, err)
		}
	}

	t.Run("default size after many distinct tokens", func(t *testing.T) {
		p := compile(t, ra("foo", "jwt", nil, rule))
		for i := range DefaultTokenCacheSize + 300 {
			accept(p, tok(i))
		}
		if n, ring := p.tokens.len(), len(p.tokens.ring); n != DefaultTokenCacheSize || ring != DefaultTokenCacheSize {
			t.Fatalf("cache holds %d tokens in %d slots, want %d", n, ring, DefaultTokenCacheSize)
		}
	})
	t.Run("a token used since the hand passed survives eviction", func(t *testing.T) {
		p := compileWith(t, RequestOptions{TokenCacheSize: 4}, ra("foo", "jwt", nil, rule))
		toks := []string{tok(0), tok(1), tok(2), tok(3), tok(4)}
		for _, tk := range toks[:4] {
			accept(p, tk)
		}
		accept(p, toks[0]) // a hit: marks it used
		accept(p, toks[4]) // evicts the first unused one after the hand
		for i, want := range []bool{true, false, true, true, true} {
			if _, ok := hit(t, p, bearer(toks[i]), nil, testNow); ok != want {
				t.Errorf("token %d cached %v, want %v", i, ok, want)
			}
		}
		if n := p.tokens.len(); n != 4 {
			t.Fatalf("cache holds %d tokens, want 4", n)
		}
	})
	t.Run("a token over the size limit is verified but not kept", func(t *testing.T) {
		p := compile(t, ra("foo", "jwt", nil, rule))
		big := hs.sign(t, claims(issuer, map[string]any{"pad": strings.Repeat("x", maxCachedTokenSize)}))
		accept(p, big)
		if n := p.tokens.len(); n != 0 {
			t.Fatalf("cache holds %d tokens, want 0", n)
		}
	})
	t.Run("a negative size turns the cache off", func(t *testing.T) {
		p := compileWith(t, RequestOptions{TokenCacheSize: -1}, ra("foo", "jwt", nil, rule))
		accept(p, tok(0))
		accept(p, tok(0))
		if p.tokens != nil {
			t.Fatal("a cache exists")
		}
	})
}

// TestTokenCacheConcurrent runs hits, misses, evictions, forgeries and JWKS
// refreshes from many goroutines at once; run it with -race.
func TestTokenCacheConcurrent(t *testing.T) {
	s := ecSigner(t)
	testKeys(t)
	f := newJWKSFixture(t, jwksJSON(t, s))
	f.policy = compileWith(t, RequestOptions{TokenCacheSize: 4},
		ra("foo", "jwt", nil, &security.JWTRule{Issuer: issuer, JwksUri: f.srv.URL + "/jwks"}))
	const nTokens = 12
	var valid, forged [nTokens]string
	for i := range nTokens {
		c := claims(issuer, map[string]any{"sub": fmt.Sprint("user-", i)})
		valid[i] = s.sign(t, c)
		forged[i] = signer{s.kid, s.alg, ecKey2}.sign(t, c)
	}

	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range 150 {
				i := (g*7 + n) % nTokens
				res, err := f.policy.Authenticate(context.Background(), bearer(valid[i]), f.cache, f.clock.Now())
				if err != nil || res.Subject != fmt.Sprint("user-", i) {
					errs <- fmt.Errorf("valid token %d: %+v %v", i, res.Subject, err)
					return
				}
				if n%10 == 0 {
					if _, err := f.policy.Authenticate(context.Background(), bearer(forged[i]), f.cache, f.clock.Now()); !errors.Is(err, ErrInvalidToken) {
						errs <- fmt.Errorf("forged token %d accepted", i)
						return
					}
				}
			}
		}()
	}
	wg.Add(1)
	go func() { // JWKS refreshes while tokens are served from the cache
		defer wg.Done()
		for range 30 {
			f.clock.Advance(time.Minute)
			time.Sleep(time.Millisecond)
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := f.policy.tokens.len(); n > 4 {
		t.Fatalf("cache holds %d tokens, more than its 4", n)
	}
}
