package authn

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	security "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"

	"github.com/zmesh/zmesh/internal/authn/jwksfetch"
	"github.com/zmesh/zmesh/internal/config"
)

// quietLog keeps expected fetch failures out of test output.
var quietLog = slog.New(slog.DiscardHandler)

// testNow is the fixed time every table test runs at.
var testNow = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// signer is a private key with the kid and alg it signs with.
type signer struct {
	kid string
	alg jwa.SignatureAlgorithm
	key any // *rsa.PrivateKey, *ecdsa.PrivateKey or []byte
}

var (
	keysOnce         sync.Once
	rsaKey1, rsaKey2 *rsa.PrivateKey
	ecKey1, ecKey2   *ecdsa.PrivateKey
	keyGenErr        error
)

// testKeys generates the test key pairs once per test binary: RSA key
// generation is slow enough to matter under -race.
func testKeys(t testing.TB) {
	t.Helper()
	keysOnce.Do(func() {
		if rsaKey1, keyGenErr = rsa.GenerateKey(rand.Reader, 2048); keyGenErr != nil {
			return
		}
		if rsaKey2, keyGenErr = rsa.GenerateKey(rand.Reader, 2048); keyGenErr != nil {
			return
		}
		if ecKey1, keyGenErr = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); keyGenErr != nil {
			return
		}
		ecKey2, keyGenErr = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	})
	if keyGenErr != nil {
		t.Fatalf("generate keys: %v", keyGenErr)
	}
}

func rsaSigner(t testing.TB) signer { testKeys(t); return signer{"rsa-1", jwa.RS256(), rsaKey1} }
func ecSigner(t testing.TB) signer  { testKeys(t); return signer{"ec-1", jwa.ES256(), ecKey1} }

// sign returns a compact JWS of claims signed by s, with extra protected
// headers.
func (s signer) sign(t testing.TB, claims map[string]any, extra ...map[string]any) string {
	t.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	hdrs := jws.NewHeaders()
	if s.kid != "" {
		_ = hdrs.Set(jws.KeyIDKey, s.kid)
	}
	for _, m := range extra {
		for k, v := range m {
			if err := hdrs.Set(k, v); err != nil {
				t.Fatal(err)
			}
		}
	}
	tok, err := jws.Sign(payload, jws.WithKey(s.alg, s.key, jws.WithProtectedHeaders(hdrs)))
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return string(tok)
}

// jwksJSON returns a JWKS document with the public keys of signers.
func jwksJSON(t testing.TB, signers ...signer) []byte {
	t.Helper()
	set := jwk.NewSet()
	for _, s := range signers {
		k, err := jwk.Import(s.key)
		if err != nil {
			t.Fatal(err)
		}
		pub, err := jwk.PublicKeyOf(k)
		if err != nil {
			t.Fatal(err)
		}
		_ = pub.Set(jwk.KeyIDKey, s.kid)
		if err := set.AddKey(pub); err != nil {
			t.Fatal(err)
		}
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// claims returns a valid claim set for issuer, valid an hour around
// testNow, merged with over (a nil value deletes a claim).
func claims(issuer string, over map[string]any) map[string]any {
	c := map[string]any{
		"iss": issuer,
		"sub": "alice",
		"aud": "bookstore",
		"iat": testNow.Add(-time.Minute).Unix(),
		"exp": testNow.Add(time.Hour).Unix(),
	}
	for k, v := range over {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

// ra returns a RequestAuthentication resource.
func ra(ns, name string, selector map[string]string, rules ...*security.JWTRule) config.Resource {
	spec := &security.RequestAuthentication{JwtRules: rules}
	if selector != nil {
		spec.Selector = &typev1beta1.WorkloadSelector{MatchLabels: selector}
	}
	return config.Resource{
		Meta: config.Meta{Kind: config.KindRequestAuthentication, Name: name, Namespace: ns},
		Spec: spec,
	}
}

// compile compiles ras with default options.
func compile(t testing.TB, ras ...config.Resource) *RequestPolicy {
	t.Helper()
	p, err := CompileRequest(ras, RequestOptions{})
	if err != nil {
		t.Fatalf("CompileRequest: %v", err)
	}
	return p
}

// bearer returns a request carrying tok as a bearer token.
func bearer(tok string) RequestView {
	return RequestView{Header: map[string][]string{"Authorization": {"Bearer " + tok}}}
}

// fakeClock is a settable clock for the JWKS cache.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: testNow} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// jwksServer is a real HTTPS JWKS endpoint whose document and availability
// a test changes as it goes.
type jwksServer struct {
	*httptest.Server
	doc  atomic.Value // []byte
	down atomic.Bool
	hits atomic.Int64
}

func newJWKSServer(t testing.TB, doc []byte) *jwksServer {
	t.Helper()
	s := &jwksServer{}
	s.doc.Store(doc)
	s.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		if s.down.Load() {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(s.doc.Load().([]byte))
	}))
	t.Cleanup(s.Close)
	return s
}

// cache returns a JWKSCache that trusts the server's certificate and reads
// the given clock.
func (s *jwksServer) cache(clock *fakeClock) *JWKSCache {
	return NewJWKSCache(JWKSCacheConfig{
		Fetcher: &jwksfetch.HTTP{Client: s.Client()},
		Now:     clock.Now,
		Logger:  quietLog,
	})
}

// authenticate runs p.Authenticate at testNow.
func authenticate(p *RequestPolicy, r RequestView, keys KeySource) (Result, error) {
	return p.Authenticate(context.Background(), r, keys, testNow)
}
