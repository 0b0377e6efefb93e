package kubeauth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/metadata"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/zmesh/zmesh/internal/ca/csr"
)

var td = spiffeid.RequireTrustDomainFromString("cluster.local")

func TestServiceAccountOf(t *testing.T) {
	tests := []struct {
		user   string
		ns, sa string
		ok     bool
	}{
		{user: "system:serviceaccount:web:frontend", ns: "web", sa: "frontend", ok: true},
		{user: "system:serviceaccount:web", ok: false},
		{user: "system:serviceaccount::frontend", ok: false},
		{user: "system:serviceaccount:web:", ok: false},
		{user: "system:serviceaccount:web:a:b", ok: false},
		{user: "admin", ok: false},
		{user: "system:node:worker-1", ok: false},
		{user: "", ok: false},
	}
	for _, tt := range tests {
		ns, sa, err := ServiceAccountOf(tt.user)
		if (err == nil) != tt.ok || ns != tt.ns || sa != tt.sa {
			t.Errorf("ServiceAccountOf(%q) = %q, %q, %v", tt.user, ns, sa, err)
		}
	}
}

func jwtWith(payload string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"ES256"}`)) + "." + enc([]byte(payload)) + "." + enc([]byte("sig"))
}

func TestTokenShape(t *testing.T) {
	tests := []struct {
		name   string
		tokens []string
		want   string
	}{
		{name: "a JWT", tokens: []string{"aaa.bbb.ccc"}, want: "aaa.bbb.ccc"},
		{name: "bootstrap token is left alone", tokens: []string{"zmesh1.payload.mac"}},
		{name: "two parts", tokens: []string{"aaa.bbb"}},
		{name: "empty part", tokens: []string{"aaa..ccc"}},
		{name: "not base64url", tokens: []string{"aa a.bbb.ccc"}},
		{name: "first JWT of several", tokens: []string{"zmesh1.x.y", "a.b.c"}, want: "a.b.c"},
		{name: "none", tokens: nil},
	}
	for _, tt := range tests {
		got, ok := findJWT(tt.tokens)
		if got != tt.want || ok != (tt.want != "") {
			t.Errorf("%s: findJWT = %q, %v", tt.name, got, ok)
		}
	}
}

func TestCacheBounds(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	id := spiffeid.RequireFromString("spiffe://cluster.local/ns/a/sa/b")
	key := func(s string) [sha256.Size]byte { return sha256.Sum256([]byte(s)) }

	c := newCache(30*time.Second, 2)
	c.put(key("t1"), id, now, time.Time{})
	if _, ok := c.get(key("t1"), now.Add(29*time.Second)); !ok {
		t.Error("entry gone before its TTL")
	}
	if _, ok := c.get(key("t1"), now.Add(30*time.Second)); ok {
		t.Error("entry outlived its TTL")
	}

	// The token's own expiry caps the TTL; a token about to expire is not
	// cached at all.
	c.put(key("t2"), id, now, now.Add(5*time.Second))
	if _, ok := c.get(key("t2"), now.Add(5*time.Second)); ok {
		t.Error("entry outlived its token")
	}
	c.put(key("t3"), id, now, now)
	if _, ok := c.get(key("t3"), now); ok {
		t.Error("an expiring token was cached")
	}

	// Full: expired entries make room, live ones are never evicted.
	c = newCache(30*time.Second, 2)
	c.put(key("a"), id, now, time.Time{})
	c.put(key("b"), id, now.Add(20*time.Second), time.Time{})
	c.put(key("c"), id, now.Add(25*time.Second), time.Time{})
	if _, ok := c.get(key("c"), now.Add(25*time.Second)); ok || c.len() != 2 {
		t.Errorf("full cache took a new entry (len %d)", c.len())
	}
	c.put(key("c"), id, now.Add(31*time.Second), time.Time{})
	if _, ok := c.get(key("c"), now.Add(31*time.Second)); !ok || c.len() != 2 {
		t.Errorf("expired entry did not make room (len %d)", c.len())
	}
}

func TestTokenExpiry(t *testing.T) {
	if got := tokenExpiry(jwtWith(`{"exp":1700000000}`)); !got.Equal(time.Unix(1700000000, 0)) {
		t.Errorf("tokenExpiry = %v", got)
	}
	for _, bad := range []string{jwtWith(`{}`), jwtWith(`{"exp":"soon"}`), jwtWith(`not json`), "a.b", "a.!!!.c"} {
		if got := tokenExpiry(bad); !got.IsZero() {
			t.Errorf("tokenExpiry(%q) = %v, want zero", bad, got)
		}
	}
}

// TestAPIOutageFailsClosed points the authenticator at a port where no
// apiserver listens: the request is refused with csr.ErrUnavailable, and
// nothing is cached.
func TestAPIOutageFailsClosed(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: "https://" + addr, TLSClientConfig: rest.TLSClientConfig{Insecure: true}})
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Config{Reviews: cs.AuthenticationV1().TokenReviews(), TrustDomain: td, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	token := jwtWith(`{"exp":4102444800}`)
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+token))
	_, err = a.Authenticate(ctx)
	if !errors.Is(err, csr.ErrUnavailable) {
		t.Fatalf("Authenticate = %v, want ErrUnavailable", err)
	}
	if strings.Contains(err.Error(), token) {
		t.Error("error carries the token")
	}
	if a.cache.len() != 0 {
		t.Error("a failed review was cached")
	}
	// No JWT: left to the other authenticators.
	ctx = metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer zmesh1.a.b"))
	if _, err := a.Authenticate(ctx); !errors.Is(err, csr.ErrNoCredentials) {
		t.Errorf("bootstrap token: Authenticate = %v, want ErrNoCredentials", err)
	}
}

func FuzzServiceAccountOf(f *testing.F) {
	f.Add("system:serviceaccount:web:frontend")
	f.Add("system:serviceaccount::")
	f.Fuzz(func(t *testing.T, user string) {
		ns, sa, err := ServiceAccountOf(user)
		if err == nil && "system:serviceaccount:"+ns+":"+sa != user {
			t.Fatalf("ServiceAccountOf(%q) = %q, %q", user, ns, sa)
		}
	})
}

func FuzzTokenExpiry(f *testing.F) {
	f.Add(jwtWith(`{"exp":1700000000}`))
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, token string) {
		_ = tokenExpiry(token)
		_, _ = findJWT([]string{token})
	})
}
