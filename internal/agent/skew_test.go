package agent_test

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zmesh/zmesh/internal/agent"
	"github.com/zmesh/zmesh/internal/agent/agenttest"
	"github.com/zmesh/zmesh/internal/ca"
	"github.com/zmesh/zmesh/internal/ca/catest"
)

func TestSkewPure(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	t.Run("SkewError.Skew", func(t *testing.T) {
		tests := []struct {
			name string
			err  agent.SkewError
			want time.Duration
		}{
			{"CA ahead: not yet valid", agent.SkewError{NotBefore: t0.Add(4 * time.Minute), NotAfter: t0.Add(time.Hour), Now: t0}, 4 * time.Minute},
			{"CA behind: already expired", agent.SkewError{NotBefore: t0.Add(-6 * time.Minute), NotAfter: t0.Add(-5 * time.Minute), Now: t0}, -5 * time.Minute},
			{"valid: no skew", agent.SkewError{NotBefore: t0.Add(-time.Minute), NotAfter: t0.Add(time.Minute), Now: t0}, 0},
		}
		for _, tt := range tests {
			if got := tt.err.Skew(); got != tt.want {
				t.Errorf("%s: Skew = %s, want %s", tt.name, got, tt.want)
			}
		}
	})
	t.Run("HeldFraction", func(t *testing.T) {
		tests := []struct {
			name   string
			nb, na time.Time
			want   float64
		}{
			{"just issued, in sync", t0, t0.Add(time.Hour), 1},
			{"backdated: the part still ahead", t0.Add(-30 * time.Minute), t0.Add(90 * time.Minute), 0.75},
			{"CA behind by half the lifetime", t0.Add(-30 * time.Minute), t0.Add(30 * time.Minute), 0.5},
			{"expired", t0.Add(-time.Hour), t0, 0},
			{"inverted", t0, t0.Add(-time.Hour), 0},
		}
		for _, tt := range tests {
			if got := agent.HeldFraction(tt.nb, tt.na, t0); got != tt.want {
				t.Errorf("%s: HeldFraction = %v, want %v", tt.name, got, tt.want)
			}
		}
	})
	t.Run("RenewalTimeHeld", func(t *testing.T) {
		tests := []struct {
			name         string
			nb, na, held time.Time
			want         time.Time
		}{
			{"in sync: half of the lifetime after install", t0.Add(-6 * time.Minute), t0.Add(time.Hour), t0, t0.Add(30 * time.Minute)},
			// From NotBefore alone this would be t0-30s, already due: a
			// renewal loop against a CA 5 minutes behind.
			{"CA 5 min behind, 10 min certs: half of what is left", t0.Add(-6 * time.Minute), t0.Add(5 * time.Minute), t0, t0.Add(150 * time.Second)},
			{"CA ahead: counted from NotBefore", t0.Add(time.Minute), t0.Add(time.Hour), t0, t0.Add(time.Minute + 1770*time.Second)},
			{"zero held: from NotBefore", t0, t0.Add(time.Hour), time.Time{}, t0.Add(30 * time.Minute)},
		}
		for _, tt := range tests {
			if got := agent.RenewalTimeHeld(tt.nb, tt.na, tt.held, 0.5); !got.Equal(tt.want) {
				t.Errorf("%s: RenewalTimeHeld = %s, want %s", tt.name, got, tt.want)
			}
		}
	})
}

// skewedCA is a real CA (and CSR service) whose clock runs offset from
// the agents' (the real clock) by a duration the test moves.
type skewedCA struct {
	offset atomic.Int64
	*catest.Server
}

func newSkewedCA(t *testing.T, ttl, offset time.Duration) *skewedCA {
	s := &skewedCA{}
	s.offset.Store(int64(offset))
	clock := func() time.Time { return time.Now().Add(time.Duration(s.offset.Load())) }
	s.Server = catest.Serve(t, catest.NewAuthority(t, ca.Config{DefaultTTL: ttl, MaxTTL: 48 * time.Hour, Clock: clock}))
	return s
}

// TestSkewFirstCertificate starts an agent against a CA whose clock is off
// by the case's skew from the first request: within the CA's backdate
// (a tenth of the lifetime, at most 10 minutes) the certificate is valid
// by the agent's clock at once, and its renewal is scheduled at half of
// the validity the agent holds, never immediately (no renewal loop).
// Beyond it the agent has no valid certificate to keep: it installs the
// one peers in sync with the CA accept, says so with the skew, and asks
// again with backoff. (Beyond the backdate of the CA's serving
// certificate, 10 minutes, the agent cannot even reach the CA: its TLS
// handshake fails, closed, with x509's "not yet valid".)
func TestSkewFirstCertificate(t *testing.T) {
	tests := []struct {
		name      string
		ttl, skew time.Duration
		// valid: the certificate is valid by the agent's clock.
		valid bool
		// warn: a log message expected, "" none.
		warn string
		// renewWithin bounds when the renewal is scheduled, from now.
		renewAfter, renewBefore time.Duration
	}{
		{name: "1h certs, CA 5 min ahead", ttl: time.Hour, skew: 5 * time.Minute, valid: true, renewAfter: 30 * time.Minute, renewBefore: 36 * time.Minute},
		{name: "1h certs, CA 5 min behind", ttl: time.Hour, skew: -5 * time.Minute, valid: true, renewAfter: 27 * time.Minute, renewBefore: 28 * time.Minute},
		{name: "24h certs, CA 5 min ahead", ttl: 24 * time.Hour, skew: 5 * time.Minute, valid: true, renewAfter: 12 * time.Hour, renewBefore: 12*time.Hour + 3*time.Minute},
		{name: "24h certs, CA 5 min behind", ttl: 24 * time.Hour, skew: -5 * time.Minute, valid: true, renewAfter: 12*time.Hour - 3*time.Minute, renewBefore: 12 * time.Hour},
		{name: "10 min certs, CA 5 min behind: renewal at half of what is left, not in a loop", ttl: 10 * time.Minute, skew: -5 * time.Minute, valid: true,
			warn: "certificate arrived with most of its lifetime gone by this agent's clock: the CA's clock is behind; renewing at half of what is left", renewAfter: 149 * time.Second, renewBefore: 151 * time.Second},
		{name: "10s certs, CA 5 min ahead: not yet valid, installed for want of one", ttl: 10 * time.Second, skew: 5 * time.Minute,
			warn: "installing a certificate this agent's clock says is not valid, for want of a valid one; fix the clocks (NTP)"},
		{name: "10s certs, CA 5 min behind: expired, installed for want of one", ttl: 10 * time.Second, skew: -5 * time.Minute,
			warn: "installing a certificate this agent's clock says is not valid, for want of a valid one; fix the clocks (NTP)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSkewedCA(t, tt.ttl, tt.skew)
			var logs lockedBuffer
			a := agenttest.Start(t, s.Server, "foo", "httpbin", agent.Config{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
			st := a.Status()
			now := time.Now()
			valid := !now.Before(st.NotBefore) && now.Before(st.NotAfter)
			if valid != tt.valid {
				t.Fatalf("certificate %s to %s valid at %s: %v, want %v", st.NotBefore, st.NotAfter, now, valid, tt.valid)
			}
			if tt.warn != "" {
				if logs.find(tt.warn) == nil {
					t.Errorf("no log %q; logs:\n%s", tt.warn, logs.String())
				}
			} else if strings.Contains(logs.String(), `"level":"WARN"`) || strings.Contains(logs.String(), `"level":"ERROR"`) {
				t.Errorf("unexpected warning:\n%s", logs.String())
			}
			if !tt.valid {
				// Backoff, not a loop: agenttest's retries are 20-200 ms.
				deadline := time.Now().Add(5 * time.Second)
				for a.Rotations() < 3 {
					if time.Now().After(deadline) {
						t.Fatalf("agent did not ask again for a certificate it could use: %+v", a.Status())
					}
					time.Sleep(20 * time.Millisecond)
				}
				return
			}
			if in := st.NextRenewal.Sub(now); in < tt.renewAfter-time.Second || in > tt.renewBefore {
				t.Errorf("renewal in %s, want between %s and %s", in.Round(time.Second), tt.renewAfter, tt.renewBefore)
			}
			if a.Rotations() != 0 || a.RenewalFailures() != 0 {
				t.Errorf("rotations %d, failures %d right after the first certificate, want 0", a.Rotations(), a.RenewalFailures())
			}
		})
	}
}

// TestSkewKeepsValidCertificate moves the CA's clock 5 minutes ahead, then
// behind, of an agent that holds a valid 2 s certificate: each renewal is
// refused as not valid by the agent's clock, the agent keeps the
// certificate it has (so its handshakes keep working while it is valid),
// says how far off the CA's clock is at least, and retries with backoff;
// once the clocks agree again it renews normally.
func TestSkewKeepsValidCertificate(t *testing.T) {
	for _, skew := range []time.Duration{5 * time.Minute, -5 * time.Minute} {
		t.Run(skew.String(), func(t *testing.T) {
			const ttl = 2 * time.Second
			s := newSkewedCA(t, ttl, 0)
			var logs lockedBuffer
			a := agenttest.Start(t, s.Server, "foo", "httpbin", agent.Config{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
			held := a.Status().Serial
			s.offset.Store(int64(skew))

			waitUntil(t, 5*time.Second, "a refused renewal", func() bool { return a.RenewalFailures() > 0 })
			st := a.Status()
			if st.Serial != held {
				t.Errorf("certificate replaced by %s while the old one was valid", st.Serial)
			}
			want := "ahead"
			if skew < 0 {
				want = "behind"
			}
			if !strings.Contains(st.LastError, "the CA's clock is at least") || !strings.Contains(st.LastError, want) ||
				!strings.Contains(st.LastError, "keeping the current certificate") {
				t.Errorf("last error %q does not explain the skew", st.LastError)
			}

			s.offset.Store(0)
			waitUntil(t, 10*time.Second, "a renewal once the clocks agree", func() bool { return a.Status().Serial != held })
			if now, st := time.Now(), a.Status(); now.Before(st.NotBefore) || !now.Before(st.NotAfter) {
				t.Errorf("new certificate %s to %s not valid at %s", st.NotBefore, st.NotAfter, now)
			}
		})
	}
}

// waitUntil polls cond every 10 ms until it holds, failing after within.
func waitUntil(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out after %s waiting for %s", within, what)
		case <-tick.C:
		}
	}
}
