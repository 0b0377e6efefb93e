package ca_test

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/zmesh/zmesh/internal/ca"
	"github.com/zmesh/zmesh/internal/ca/catest"
)

func TestIssueTokenFromDataDir(t *testing.T) {
	dir := t.TempDir()
	a := catest.NewAuthority(t, ca.Config{DataDir: dir})
	tok, err := ca.IssueToken(dir, "foo", "bar", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	id, err := a.TokenVerifier().Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if id != workload {
		t.Fatalf("token grants %s, want %s", id, workload)
	}
	again, _ := ca.IssueToken(dir, "foo", "bar", time.Hour)
	if again == tok {
		t.Error("two tokens for one identity are identical; want a random ID in each")
	}
}

func TestIssueTokenRefuses(t *testing.T) {
	dir := t.TempDir()
	catest.NewAuthority(t, ca.Config{DataDir: dir})
	tests := []struct {
		name    string
		dir     string
		ns, sa  string
		ttl     time.Duration
		wantErr error
	}{
		{name: "data dir without a key", dir: t.TempDir(), ns: "foo", sa: "bar", ttl: time.Hour, wantErr: ca.ErrNoTokenKey},
		{name: "invalid namespace", dir: dir, ns: "Foo", sa: "bar", ttl: time.Hour},
		{name: "service account with a slash", dir: dir, ns: "foo", sa: "bar/sa/admin", ttl: time.Hour},
		{name: "zero lifetime", dir: dir, ns: "foo", sa: "bar", ttl: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := ca.IssueToken(tt.dir, tt.ns, tt.sa, tt.ttl)
			if err == nil {
				t.Fatalf("IssueToken = %q, want error", tok)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestTokenVerify(t *testing.T) {
	clock := catest.NewClock(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	a := catest.NewAuthority(t, ca.Config{Clock: clock.Now})
	other := catest.NewAuthority(t, ca.Config{Clock: clock.Now})
	valid, err := a.IssueToken("foo", "bar", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	fromOther, _ := other.IssueToken("foo", "bar", time.Hour)

	payload, sig := splitToken(t, valid)
	forgedClaims := strings.Replace(decode(t, payload), `"sa":"bar"`, `"sa":"admin"`, 1)

	tests := []struct {
		name    string
		token   string
		advance time.Duration
		wantErr error
	}{
		{name: "valid token", token: valid},
		{name: "valid just before expiry", token: valid, advance: time.Hour - time.Second},
		{name: "expired", token: valid, advance: time.Hour, wantErr: ca.ErrTokenExpired},
		{name: "signed with another data dir's key", token: fromOther, wantErr: ca.ErrTokenSignature},
		{name: "claims changed", token: ca.TokenPrefix + encode(forgedClaims) + "." + sig, wantErr: ca.ErrTokenSignature},
		{name: "signature flipped", token: ca.TokenPrefix + payload + "." + flip(sig), wantErr: ca.ErrTokenSignature},
		{name: "signature truncated", token: ca.TokenPrefix + payload + "." + sig[:10], wantErr: ca.ErrTokenMalformed},
		{name: "no signature", token: ca.TokenPrefix + payload, wantErr: ca.ErrTokenMalformed},
		{name: "wrong prefix", token: "zmesh2." + payload + "." + sig, wantErr: ca.ErrTokenMalformed},
		{name: "kubernetes JWT", token: "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", wantErr: ca.ErrTokenMalformed},
		{name: "empty", token: "", wantErr: ca.ErrTokenMalformed},
		{name: "oversized", token: valid + strings.Repeat("A", ca.MaxTokenSize), wantErr: ca.ErrTokenMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := ca.NewTokenVerifier(tokenKey(t, a), catest.TrustDomain, func() time.Time { return clock.Now().Add(tt.advance) })
			if err != nil {
				t.Fatal(err)
			}
			id, err := v.Verify(tt.token)
			if tt.wantErr == nil {
				if err != nil || id != workload {
					t.Fatalf("Verify = %s, %v; want %s", id, err, workload)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Verify err = %v, want %v", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), sig) {
				t.Error("error repeats the token's signature")
			}
		})
	}
}

func TestTokenIssuedInTheFuture(t *testing.T) {
	clock := catest.NewClock(time.Now())
	a := catest.NewAuthority(t, ca.Config{Clock: clock.Now})
	tok, _ := a.IssueToken("foo", "bar", 24*time.Hour)
	v, _ := ca.NewTokenVerifier(tokenKey(t, a), catest.TrustDomain, func() time.Time { return clock.Now().Add(-time.Hour) })
	if _, err := v.Verify(tok); !errors.Is(err, ca.ErrTokenMalformed) {
		t.Fatalf("Verify = %v, want ErrTokenMalformed for a token from an hour ahead", err)
	}
}

func TestNewTokenVerifierRefusesShortKey(t *testing.T) {
	if _, err := ca.NewTokenVerifier(make([]byte, 16), catest.TrustDomain, nil); err == nil {
		t.Fatal("want error for a 16-byte key")
	}
}

func FuzzParseToken(f *testing.F) {
	dir := f.TempDir()
	a, err := ca.Load(ca.Config{DataDir: dir, TrustDomain: catest.TrustDomain})
	if err != nil {
		f.Fatal(err)
	}
	tok, _ := a.IssueToken("foo", "bar", time.Hour)
	f.Add(tok)
	f.Add(ca.TokenPrefix + ".")
	f.Add(ca.TokenPrefix + "e30." + strings.Repeat("A", 43))
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	v := a.TokenVerifier()
	f.Fuzz(func(t *testing.T, s string) {
		claims, signed, mac, err := ca.ParseToken(s)
		if err != nil {
			if !errors.Is(err, ca.ErrTokenMalformed) {
				t.Fatalf("ParseToken error %v does not wrap ErrTokenMalformed", err)
			}
		} else if len(mac) != 32 || !strings.HasPrefix(signed, ca.TokenPrefix) || len(s) > ca.MaxTokenSize {
			t.Fatalf("ParseToken accepted %q: %+v", s, claims)
		}
		if id, err := v.Verify(s); err == nil && s != tok {
			t.Fatalf("Verify accepted a token it did not issue: %q -> %s", s, id)
		}
	})
}

// tokenKey reads a's token key back, for verifiers with a custom clock.
func tokenKey(t *testing.T, a *ca.Authority) []byte {
	t.Helper()
	key, err := ca.ReadTokenKey(a.DataDir())
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func splitToken(t *testing.T, tok string) (payload, sig string) {
	t.Helper()
	rest := strings.TrimPrefix(tok, ca.TokenPrefix)
	i := strings.LastIndexByte(rest, '.')
	return rest[:i], rest[i+1:]
}

func decode(t *testing.T, s string) string {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func encode(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func flip(sig string) string {
	b, _ := base64.RawURLEncoding.DecodeString(sig)
	b[0] ^= 1
	return base64.RawURLEncoding.EncodeToString(b)
}
