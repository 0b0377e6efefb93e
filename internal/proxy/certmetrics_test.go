package proxy

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zmesh/zmesh/internal/agent"
	"github.com/zmesh/zmesh/internal/meshtest"
)

// The agent is the source the sidecar wires in: it must keep providing
// what the proxy reads, counters included.
var (
	_ CertificateSource = (*agent.Agent)(nil)
	_ RenewalCounter    = (*agent.Agent)(nil)
)

// sample returns the value of the unlabelled metric name on p's /metrics.
func sample(t testing.TB, p *testProxy, name string) float64 {
	t.Helper()
	for _, l := range strings.Split(scrape(t, p), "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", l, err)
			}
			return f
		}
	}
	t.Fatalf("no sample of %s", name)
	return 0
}

func TestCertificateMetrics(t *testing.T) {
	p := startProxy(t, meshtest.NewCA(t, testTD), "api", "backend", nil)
	leaf, _ := p.certs.GetX509SVID()
	notAfter := leaf.Certificates[0].NotAfter

	if got := sample(t, p, "zmesh_cert_expiry_timestamp_seconds"); got != float64(notAfter.Unix()) {
		t.Errorf("expiry timestamp = %v, want %d", got, notAfter.Unix())
	}
	if got := sample(t, p, "zmesh_cert_expires_in_seconds"); got > time.Hour.Seconds() || got < time.Hour.Seconds()-60 {
		t.Errorf("expires in %vs, want about an hour", got)
	}
	if got := sample(t, p, "zmesh_cert_rotations_total"); got != 0 {
		t.Errorf("rotations = %v before any", got)
	}
	p.certs.rotate(t)
	p.certs.rotate(t)
	if got := sample(t, p, "zmesh_cert_rotations_total"); got != 2 {
		t.Errorf("rotations = %v, want 2", got)
	}
	if got := sample(t, p, "zmesh_cert_renewal_failures_total"); got != 0 {
		t.Errorf("renewal failures = %v", got)
	}
	// A certificate past its end: a negative time to expiry.
	p.certs.issue(t, p.certs.uri, -time.Minute)
	if got := sample(t, p, "zmesh_cert_expires_in_seconds"); got >= 0 {
		t.Errorf("expired certificate: expires in %vs, want negative", got)
	}
}
