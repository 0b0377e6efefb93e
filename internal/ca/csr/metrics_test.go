package csr_test

import (
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/zmesh/zmesh/internal/ca"
	"github.com/zmesh/zmesh/internal/ca/catest"
)

// TestSigningDurationObservedPerIssuance checks that every certificate
// issued, and nothing refused, is one sample of the signing histogram, and
// that the samples are plausible signing times.
func TestSigningDurationObservedPerIssuance(t *testing.T) {
	a := catest.NewAuthority(t, ca.Config{})
	s := catest.Serve(t, a)
	token, err := a.IssueToken("foo", "bar", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	const issued = 3
	for range issued {
		if _, err := (call{token: token, csr: string(catest.CSR(t, catest.NewKey(t)))}).do(t, s); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := (call{token: token, csr: "garbage"}).do(t, s); err == nil {
		t.Fatal("garbage CSR accepted")
	}
	if _, err := (call{csr: string(catest.CSR(t, catest.NewKey(t)))}).do(t, s); err == nil {
		t.Fatal("unauthenticated request accepted")
	}

	h := histogram(t, s, "zmesh_ca_signing_duration_seconds")
	if got := h.GetSampleCount(); got != issued {
		t.Errorf("signing samples = %d, want %d (issuances only)", got, issued)
	}
	if sum := h.GetSampleSum(); !(sum > 0 && sum < issued*5) {
		t.Errorf("signing time sum = %vs for %d issuances", sum, issued)
	}
	if got := metricValue(t, s, "zmesh_ca_certificates_issued_total", ""); got != issued {
		t.Errorf("issued counter = %v, want %d", got, issued)
	}
}

func histogram(t *testing.T, s *catest.Server, name string) *dto.Histogram {
	t.Helper()
	families, err := s.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name && len(f.GetMetric()) == 1 {
			return f.GetMetric()[0].GetHistogram()
		}
	}
	t.Fatalf("no histogram %s", name)
	return nil
}
