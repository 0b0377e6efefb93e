package csr_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/zmesh/zmesh/internal/ca"
	"github.com/zmesh/zmesh/internal/ca/catest"
	"github.com/zmesh/zmesh/internal/ca/csr"
)

// TestAuthenticatorOutageFailsClosed checks that an authenticator whose
// backend is down refuses the request as Unavailable (retry later), counted
// as auth_unavailable, and that BearerTokens hands it the caller's token.
func TestAuthenticatorOutageFailsClosed(t *testing.T) {
	a := catest.NewAuthority(t, ca.Config{})
	var seen []string
	down := csr.AuthenticatorFunc(func(ctx context.Context) (spiffeid.ID, error) {
		seen = csr.BearerTokens(ctx)
		return spiffeid.ID{}, fmt.Errorf("kubernetes: tokenreview: %w: connection refused", csr.ErrUnavailable)
	})
	s := catest.ServeService(t, csr.Config{Authority: a, Authenticators: []csr.Authenticator{down}})
	_, err := (call{token: "some.jwt.token", csr: string(catest.CSR(t, catest.NewKey(t)))}).do(t, s)
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("CreateCertificate = %v, want Unavailable", err)
	}
	if len(seen) != 1 || seen[0] != "some.jwt.token" {
		t.Errorf("BearerTokens = %q", seen)
	}
	if got := metricValue(t, s, "zmesh_ca_certificate_refusals_total", "auth_unavailable"); got != 1 {
		t.Errorf("refusals{reason=auth_unavailable} = %v, want 1", got)
	}
	if got := metricValue(t, s, "zmesh_ca_certificates_issued_total", ""); got != 0 {
		t.Errorf("issued = %v during an outage", got)
	}
}
