package csr_test

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/zmesh/zmesh/internal/ca"
	"github.com/zmesh/zmesh/internal/ca/catest"
)

// TestCreateCertificateRefusedWhenCACannotIssue drives the CA's clock to
// where its root can no longer vouch for a useful certificate, and to before
// the root's start: the service answers FailedPrecondition, counts the
// refusal by reason and issues nothing, where it used to return a leaf whose
// NotAfter was before its NotBefore.
func TestCreateCertificateRefusedWhenCACannotIssue(t *testing.T) {
	tests := []struct {
		name   string
		move   time.Duration
		reason string
	}{
		{name: "root expires in two minutes", move: time.Hour - 2*time.Minute, reason: "ca_expired"},
		{name: "root not valid yet", move: -2 * time.Hour, reason: "ca_not_yet_valid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := catest.NewClock(time.Now())
			a := catest.NewAuthority(t, ca.Config{RootTTL: time.Hour, DefaultTTL: 30 * time.Minute, Clock: clock.Now})
			s := catest.Serve(t, a)
			root := a.SigningCertificate()
			// One issuance first, which also caches the serving certificate.
			token, err := a.IssueToken("foo", "bar", 3*time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := (call{token: token, csr: string(catest.CSR(t, catest.NewKey(t)))}).do(t, s); err != nil {
				t.Fatal(err)
			}

			clock.Add(tt.move)
			if tt.move < 0 {
				// A token minted on the CA's clock, so that only the CA's
				// own validity is at stake.
				if token, err = a.IssueToken("foo", "bar", 3*time.Hour); err != nil {
					t.Fatal(err)
				}
			}
			resp, err := (call{token: token, csr: string(catest.CSR(t, catest.NewKey(t)))}).do(t, s)
			if status.Code(err) != codes.FailedPrecondition {
				t.Fatalf("code = %v (%v), want FailedPrecondition; response %v", status.Code(err), err, resp)
			}
			if got := metricValue(t, s, "zmesh_ca_certificate_refusals_total", tt.reason); got != 1 {
				t.Errorf("refusals{reason=%s} = %v, want 1", tt.reason, got)
			}
			if got := metricValue(t, s, "zmesh_ca_certificates_issued_total", ""); got != 1 {
				t.Errorf("issued = %v, want 1 (the one before the clock moved)", got)
			}
			if got := gaugeValue(t, s, "zmesh_ca_root_expiry_timestamp_seconds"); got != float64(root.NotAfter.Unix()) {
				t.Errorf("root expiry gauge = %v, want %d", got, root.NotAfter.Unix())
			}
			if got := gaugeValue(t, s, "zmesh_ca_cert_chain_expiry_timestamp_seconds"); got != float64(root.NotAfter.Unix()) {
				t.Errorf("chain expiry gauge = %v, want %d", got, root.NotAfter.Unix())
			}
		})
	}
}

func gaugeValue(t *testing.T, s *catest.Server, name string) float64 {
	t.Helper()
	families, err := s.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name && len(f.GetMetric()) == 1 {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no gauge %s", name)
	return 0
}
