package authn

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jwa"
	security "istio.io/api/security/v1beta1"
)

// FuzzAuthenticate feeds arbitrary tokens, in the Authorization header and
// a query parameter, to a fixed policy with inline ES256 and RS256 keys. It
// must never panic, and must never report a request authenticated unless
// jwx, used directly as an oracle, verifies the token's signature with one
// of the policy's keys.
func FuzzAuthenticate(f *testing.F) {
	ec, rsa := ecSigner(f), rsaSigner(f)
	p := compile(f, ra("foo", "jwt", nil, &security.JWTRule{
		Issuer:    issuer,
		Audiences: []string{"bookstore"},
		Jwks:      string(jwksJSON(f, ec, rsa)),
		OutputClaimToHeaders: []*security.ClaimToHeader{
			{Header: "x-sub", Claim: "sub"}, {Header: "x-nested", Claim: "a.b.c"},
		},
		SpaceDelimitedClaims: []string{"a.b.c"},
	}))
	valid := ec.sign(f, claims(issuer, map[string]any{"scope": "a b", "a": map[string]any{"b": map[string]any{"c": "x y"}}}))
	f.Add(valid)
	f.Add(rsa.sign(f, claims(issuer, nil)))
	f.Add(tamper(valid))
	f.Add(strings.Replace(valid, ".", "..", 1))
	f.Add(base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`)) + "." + strings.Split(valid, ".")[1] + ".")
	f.Add(signer{"ec-1", jwa.HS256(), []byte("secret")}.sign(f, claims(issuer, nil)))
	f.Add("eyJhbGciOiJFUzI1NiJ9.W1tbW1tbW1tbW1tbW10=.")
	f.Add("")
	f.Add("....")
	f.Fuzz(func(t *testing.T, tok string) {
		for _, r := range []RequestView{
			{Header: map[string][]string{"Authorization": {"Bearer " + tok}}},
			{RawQuery: "access_token=" + tok},
		} {
			res, err := p.Authenticate(context.Background(), r, nil, testNow)
			if err != nil && res.Authenticated {
				t.Fatalf("error %v with an authenticated result", err)
			}
			if !res.Authenticated {
				continue
			}
			if !verifyIndependently(res.Token, jwa.ES256(), &ecKey1.PublicKey) &&
				!verifyIndependently(res.Token, jwa.RS256(), &rsaKey1.PublicKey) {
				t.Fatalf("authenticated a token whose signature does not verify: %q", res.Token)
			}
			if res.Principal == "" || !strings.HasPrefix(res.Principal, issuer+"/") {
				t.Fatalf("principal %q", res.Principal)
			}
		}
	})
}

// BenchmarkValidateCachedJWKS measures one ES256 token validation with the
// key set already in a JWKSCache, as on a proxy's request path: the cost of
// a token the policy has not verified before (its token cache is off).
func BenchmarkValidateCachedJWKS(b *testing.B) {
	benchmarkJWT(b, RequestOptions{TokenCacheSize: -1})
}

// BenchmarkJWTCachedToken measures the same request when the policy has
// verified the token before, as for every request after a client's first
// with the same token.
func BenchmarkJWTCachedToken(b *testing.B) {
	benchmarkJWT(b, RequestOptions{})
}

// benchmarkJWT authenticates one ES256 token, its JWKS prefetched into a
// JWKSCache, with a policy compiled with opts. One request before the timer
// starts fills the policy's token cache, when it has one.
func benchmarkJWT(b *testing.B, opts RequestOptions) {
	s := ecSigner(b)
	srv := newJWKSServer(b, jwksJSON(b, s, rsaSigner(b)))
	clock := newFakeClock()
	cache := srv.cache(clock)
	p := compileWith(b, opts, ra("foo", "jwt", nil, &security.JWTRule{
		Issuer:    issuer,
		Audiences: []string{"bookstore"},
		JwksUri:   srv.URL + "/jwks",
	}))
	tok := s.sign(b, claims(issuer, map[string]any{"groups": []string{"dev", "ops"}}))
	req := bearer(tok)
	ctx := context.Background()
	now := clock.Now()
	if err := cache.Prefetch(ctx, p); err != nil {
		b.Fatal(err)
	}
	if _, err := p.Authenticate(ctx, req, cache, now); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		res, err := p.Authenticate(ctx, req, cache, now)
		if err != nil || !res.Authenticated {
			b.Fatalf("res %+v err %v", res, err)
		}
	}
	b.StopTimer()
	if hits := srv.hits.Load(); hits != 1 {
		b.Fatalf("JWKS fetched %d times during the benchmark", hits)
	}
	wantCached := 1
	if opts.TokenCacheSize < 0 {
		wantCached = 0
	}
	if n := p.tokens.len(); n != wantCached {
		b.Fatalf("token cache holds %d tokens, want %d", n, wantCached)
	}
}
