package csr_test

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/zmesh/zmesh/internal/ca"
	"github.com/zmesh/zmesh/internal/ca/catest"
	"github.com/zmesh/zmesh/internal/ca/csr"
)

// TestRateLimitPerIdentity replays one bootstrap token: each use yields the
// token's identity and nothing more, until that identity's bucket is empty;
// another identity is unaffected, and the bucket refills with the clock.
func TestRateLimitPerIdentity(t *testing.T) {
	clock := catest.NewClock(time.Now())
	authority := catest.NewAuthority(t, ca.Config{Clock: clock.Now})
	s := catest.ServeService(t, csr.Config{Authority: authority, RateLimit: csr.RateLimit{Rate: 1, Burst: 3}, Clock: clock.Now})
	token, err := authority.IssueToken("foo", "bar", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	other, err := authority.IssueToken("other", "thing", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	code := func(tok string) codes.Code {
		t.Helper()
		resp, err := call{token: tok, csr: string(catest.CSR(t, catest.NewKey(t)))}.do(t, s)
		if err == nil && len(resp.CertChain) == 0 {
			t.Fatal("empty response")
		}
		return status.Code(err)
	}

	for i := range 3 {
		if c := code(token); c != codes.OK {
			t.Fatalf("use %d of a replayed token within the burst: %s", i+1, c)
		}
	}
	if c := code(token); c != codes.ResourceExhausted {
		t.Fatalf("use beyond the burst: %s, want ResourceExhausted", c)
	}
	if c := code(other); c != codes.OK {
		t.Errorf("another identity was limited too: %s", c)
	}
	clock.Add(time.Second)
	if c := code(token); c != codes.OK {
		t.Errorf("after a second at 1/s: %s, want OK", c)
	}
	if c := code(token); c != codes.ResourceExhausted {
		t.Errorf("second request in that second: %s, want ResourceExhausted", c)
	}
	if got := metricValue(t, s, "zmesh_ca_certificate_refusals_total", "rate_limited"); got != 2 {
		t.Errorf("rate_limited refusals = %v, want 2", got)
	}

	// An expired token is refused as such, whatever its use count.
	clock.Add(2 * time.Hour)
	if c := code(other); c != codes.Unauthenticated {
		t.Errorf("expired token: %s, want Unauthenticated", c)
	}
	if got := metricValue(t, s, "zmesh_ca_certificate_refusals_total", "token_expired"); got != 1 {
		t.Errorf("token_expired refusals = %v, want 1", got)
	}
}

func TestRateLimitDisabled(t *testing.T) {
	authority := catest.NewAuthority(t, ca.Config{})
	s := catest.ServeService(t, csr.Config{Authority: authority, RateLimit: csr.RateLimit{Rate: -1}})
	token, err := authority.IssueToken("foo", "bar", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := (call{token: token, csr: string(catest.CSR(t, catest.NewKey(t)))}).do(t, s); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
}

// TestResponseCarriesWholeBundle checks Istio's layout during a root
// rotation: the leaf, then the bundle of both roots as the last element,
// also when an issuance before the rotation had only one.
func TestResponseCarriesWholeBundle(t *testing.T) {
	authority := catest.NewAuthority(t, ca.Config{})
	s := catest.Serve(t, authority)
	token, err := authority.IssueToken("foo", "bar", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	before, err := call{token: token, csr: string(catest.CSR(t, catest.NewKey(t)))}.do(t, s)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(before.CertChain[len(before.CertChain)-1], "BEGIN CERTIFICATE"); got != 1 {
		t.Fatalf("bundle element before the rotation holds %d roots, want 1", got)
	}
	if err := authority.Rotate(ca.StepPrepare, ca.RotateOptions{}); err != nil {
		t.Fatal(err)
	}
	resp, err := call{token: token, csr: string(catest.CSR(t, catest.NewKey(t)))}.do(t, s)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(resp.CertChain); n != 2 {
		t.Fatalf("cert_chain has %d elements, want leaf and bundle", n)
	}
	if got := strings.Count(resp.CertChain[1], "BEGIN CERTIFICATE"); got != 2 {
		t.Errorf("bundle element holds %d roots, want 2", got)
	}
}
