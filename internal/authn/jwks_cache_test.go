package authn

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	durationpbpkg "google.golang.org/protobuf/types/known/durationpb"
	security "istio.io/api/security/v1beta1"

	"github.com/zmesh/zmesh/internal/authn/jwksfetch"
)

// jwksFixture is a policy whose one rule takes its keys from a live HTTPS
// JWKS endpoint through a JWKSCache on a fake clock.
type jwksFixture struct {
	srv    *jwksServer
	clock  *fakeClock
	cache  *JWKSCache
	policy *RequestPolicy
}

func newJWKSFixture(t *testing.T, doc []byte) *jwksFixture {
	t.Helper()
	f := &jwksFixture{srv: newJWKSServer(t, doc), clock: newFakeClock()}
	f.cache = f.srv.cache(f.clock)
	f.policy = compile(t, ra("foo", "jwt", nil, &security.JWTRule{Issuer: issuer, JwksUri: f.srv.URL + "/jwks"}))
	return f
}

// check authenticates tok at the fixture's clock and returns the refusal
// reason, 0 when the token is accepted.
func (f *jwksFixture) check(t *testing.T, tok string) Reason {
	t.Helper()
	res, err := f.policy.Authenticate(context.Background(), bearer(tok), f.cache, f.clock.Now())
	if err != nil {
		var te *TokenError
		if !errors.As(err, &te) {
			t.Fatalf("err = %v, want a TokenError", err)
		}
		return te.Reason
	}
	if !res.Authenticated {
		t.Fatal("a token was accepted without authenticating")
	}
	return 0
}

func (f *jwksFixture) wantHits(t *testing.T, n int64) {
	t.Helper()
	if got := f.srv.hits.Load(); got != n {
		t.Fatalf("JWKS fetched %d times, want %d", got, n)
	}
}

// TestJWKSKeyRotation: a token under a new kid makes the cache refetch,
// at most once per MinRefetchInterval.
func TestJWKSKeyRotation(t *testing.T) {
	testKeys(t)
	old, rotated := signer{"k1", jwa.ES256(), ecKey1}, signer{"k2", jwa.ES256(), ecKey2}
	f := newJWKSFixture(t, jwksJSON(t, old))

	if r := f.check(t, old.sign(t, claims(issuer, nil))); r != 0 {
		t.Fatalf("old key: %v", r)
	}
	f.wantHits(t, 1)
	if r := f.check(t, old.sign(t, claims(issuer, nil))); r != 0 {
		t.Fatalf("old key, cached: %v", r)
	}
	f.wantHits(t, 1)

	// The issuer rotates; the cache learns of it from the new kid.
	f.srv.doc.Store(jwksJSON(t, rotated))
	f.clock.Advance(DefaultJWKSMinRefetchInterval)
	if r := f.check(t, rotated.sign(t, claims(issuer, nil))); r != 0 {
		t.Fatalf("rotated key: %v", r)
	}
	f.wantHits(t, 2)

	// Forged kids do not turn requests into fetches.
	for i := 0; i < 5; i++ {
		if r := f.check(t, signer{"forged", jwa.ES256(), ecKey1}.sign(t, claims(issuer, nil))); r != ReasonNoKey {
			t.Fatalf("forged kid: %v, want %v", r, ReasonNoKey)
		}
	}
	f.wantHits(t, 2)
	f.clock.Advance(DefaultJWKSMinRefetchInterval)
	f.check(t, signer{"forged", jwa.ES256(), ecKey1}.sign(t, claims(issuer, nil)))
	f.wantHits(t, 3)

	// The old key is gone from the set.
	if r := f.check(t, old.sign(t, claims(issuer, nil))); r != ReasonNoKey {
		t.Fatalf("retired key: %v, want %v", r, ReasonNoKey)
	}
}

// TestJWKSRefresh: the set is refetched after RefreshInterval even without
// an unknown kid, and a failed refresh keeps the last good set.
func TestJWKSRefresh(t *testing.T) {
	s := ecSigner(t)
	f := newJWKSFixture(t, jwksJSON(t, s))
	tok := s.sign(t, claims(issuer, nil))
	if r := f.check(t, tok); r != 0 {
		t.Fatal(r)
	}
	f.clock.Advance(DefaultJWKSRefreshInterval - time.Second)
	f.check(t, tok)
	f.wantHits(t, 1)

	f.srv.down.Store(true)
	f.clock.Advance(time.Second)
	if r := f.check(t, tok); r != 0 {
		t.Fatalf("endpoint down after a good fetch: %v, want the last good keys", r)
	}
	f.wantHits(t, 2)
	if r := f.check(t, tok); r != 0 {
		t.Fatal(r)
	}
	f.wantHits(t, 2) // retries are rate-limited

	f.srv.down.Store(false)
	f.srv.doc.Store(jwksJSON(t, rsaSigner(t)))
	f.clock.Advance(DefaultJWKSMinRefetchInterval)
	if r := f.check(t, tok); r != ReasonNoKey {
		t.Fatalf("after a successful refresh without the key: %v, want %v", r, ReasonNoKey)
	}
	f.wantHits(t, 3)
}

// TestJWKSFailClosed: when the keys were never fetched, tokens are refused
// until a fetch succeeds, and retries are rate-limited.
func TestJWKSFailClosed(t *testing.T) {
	s := ecSigner(t)
	f := newJWKSFixture(t, jwksJSON(t, s))
	f.srv.down.Store(true)
	tok := s.sign(t, claims(issuer, nil))
	for i := 0; i < 3; i++ {
		if r := f.check(t, tok); r != ReasonKeysUnavailable {
			t.Fatalf("endpoint down at start: %v, want %v", r, ReasonKeysUnavailable)
		}
	}
	f.wantHits(t, 1)
	if res, err := f.policy.Authenticate(context.Background(), RequestView{}, f.cache, f.clock.Now()); err != nil || res.Authenticated {
		t.Fatalf("no token with keys unavailable: %+v %v, want a pass", res, err)
	}

	f.srv.down.Store(false)
	f.clock.Advance(DefaultJWKSMinRefetchInterval)
	if r := f.check(t, tok); r != 0 {
		t.Fatalf("endpoint back: %v", r)
	}
	f.wantHits(t, 2)
}

// TestJWKSFetchBounds checks that bad or oversized documents and slow
// endpoints fail cleanly.
func TestJWKSFetchBounds(t *testing.T) {
	s := ecSigner(t)
	tests := []struct {
		name    string
		handler http.HandlerFunc
		slow    bool // answer only after the test, whatever the client does
		fetcher func(*httptest.Server) *jwksfetch.HTTP
		wantErr string
	}{
		{
			name:    "a body over MaxBytes is refused",
			handler: func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(strings.Repeat(" ", 2048) + "{}")) },
			fetcher: func(srv *httptest.Server) *jwksfetch.HTTP {
				return &jwksfetch.HTTP{Client: srv.Client(), MaxBytes: 1024}
			},
			wantErr: "larger than 1024 bytes",
		},
		{
			name:    "a non-200 status is refused",
			handler: func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) },
			wantErr: "404",
		},
		{
			name:    "a document that is not a JWKS is refused",
			handler: func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{"keys":"no"}`)) },
			wantErr: "JWKS",
		},
		{
			name:    "a slow endpoint times out at the rule's timeout",
			slow:    true,
			wantErr: "deadline exceeded",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			handler := tt.handler
			release := make(chan struct{})
			if tt.slow {
				handler = func(w http.ResponseWriter, r *http.Request) { <-release }
			}
			srv := httptest.NewTLSServer(handler)
			defer srv.Close()
			defer close(release) // before Close, which waits for handlers
			fetcher := &jwksfetch.HTTP{Client: srv.Client()}
			if tt.fetcher != nil {
				fetcher = tt.fetcher(srv)
			}
			cache := NewJWKSCache(JWKSCacheConfig{Fetcher: fetcher, Now: newFakeClock().Now, Logger: quietLog})
			p := compile(t, ra("foo", "jwt", nil, &security.JWTRule{
				Issuer: issuer, JwksUri: srv.URL, Timeout: durationpb(200 * time.Millisecond),
			}))
			_, err := cache.Keys(context.Background(), p.Rules()[0], "")
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.wantErr)
			}
			_, err = p.Authenticate(context.Background(), bearer(s.sign(t, claims(issuer, nil))), cache, testNow)
			if !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("Authenticate err = %v, want a rejection", err)
			}
		})
	}
}

// TestJWKSDiscovery: a rule with neither jwks nor jwksUri finds its keys
// through the issuer's OpenID discovery document, as istiod does.
func TestJWKSDiscovery(t *testing.T) {
	s := ecSigner(t)
	doc := jwksJSON(t, s)
	var srv *httptest.Server
	srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			w.Write([]byte(`{"issuer":"` + srv.URL + `","jwks_uri":"` + srv.URL + `/keys"}`))
		case "/keys":
			w.Write(doc)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	cache := NewJWKSCache(JWKSCacheConfig{Fetcher: &jwksfetch.HTTP{Client: srv.Client()}, Now: newFakeClock().Now, Logger: quietLog})
	p := compile(t, ra("foo", "jwt", nil, &security.JWTRule{Issuer: srv.URL}))
	res, err := p.Authenticate(context.Background(), bearer(s.sign(t, claims(srv.URL, nil))), cache, testNow)
	if err != nil || !res.Authenticated {
		t.Fatalf("res %+v err %v", res, err)
	}
}

// TestJWKSConcurrentFirstFetch: many requests arriving before the first
// fetch share one fetch.
func TestJWKSConcurrentFirstFetch(t *testing.T) {
	s := ecSigner(t)
	f := newJWKSFixture(t, jwksJSON(t, s))
	tok := s.sign(t, claims(issuer, nil))
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := f.policy.Authenticate(context.Background(), bearer(tok), f.cache, f.clock.Now())
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	f.wantHits(t, 1)
}

// TestJWKSPrefetch: Prefetch warms the cache at config time and reports
// the key sets it could not get.
func TestJWKSPrefetch(t *testing.T) {
	s := ecSigner(t)
	f := newJWKSFixture(t, jwksJSON(t, s))
	if err := f.cache.Prefetch(context.Background(), f.policy); err != nil {
		t.Fatal(err)
	}
	f.wantHits(t, 1)
	f.check(t, s.sign(t, claims(issuer, nil)))
	f.wantHits(t, 1)

	down := newJWKSFixture(t, jwksJSON(t, s))
	down.srv.down.Store(true)
	if err := down.cache.Prefetch(context.Background(), down.policy); err == nil {
		t.Fatal("want an error for an unreachable JWKS")
	}
}

func durationpb(d time.Duration) *durationpbpkg.Duration { return durationpbpkg.New(d) }

// TestJWKSCacheWithoutFetcher: a cache built without a fetcher (zmesh
// check's library default) fails closed for rules whose keys must be
// fetched, and still serves inline jwks.
func TestJWKSCacheWithoutFetcher(t *testing.T) {
	s := ecSigner(t)
	cache := NewJWKSCache(JWKSCacheConfig{Now: newFakeClock().Now, Logger: quietLog})
	remote := compile(t, ra("foo", "jwt", nil, &security.JWTRule{Issuer: issuer, JwksUri: "https://keys.invalid/jwks"}))
	if _, err := cache.Keys(context.Background(), remote.Rules()[0], ""); err == nil || !strings.Contains(err.Error(), "no JWKS fetcher") {
		t.Fatalf("Keys err = %v, want no JWKS fetcher", err)
	}
	if _, err := remote.Authenticate(context.Background(), bearer(s.sign(t, claims(issuer, nil))), cache, testNow); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("Authenticate err = %v, want a rejection", err)
	}
	inline := compile(t, ra("foo", "jwt", nil, &security.JWTRule{Issuer: issuer, Jwks: string(jwksJSON(t, s))}))
	res, err := inline.Authenticate(context.Background(), bearer(s.sign(t, claims(issuer, nil))), cache, testNow)
	if err != nil || !res.Authenticated {
		t.Fatalf("inline jwks: res %+v err %v", res, err)
	}
}
