package agent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zmesh/zmesh/internal/agent"
	"github.com/zmesh/zmesh/internal/ca"
	"github.com/zmesh/zmesh/internal/ca/catest"
)

func TestExpiryStageAt(t *testing.T) {
	nb := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	na := nb.Add(100 * time.Hour)
	tests := []struct {
		name     string
		at       time.Duration // after notBefore
		fraction float64
		want     agent.ExpiryStage
	}{
		{"just issued", 0, 0.2, agent.ExpiryFar},
		{"past renewal, 25% left", 75 * time.Hour, 0.2, agent.ExpiryFar},
		{"exactly 20% left", 80 * time.Hour, 0.2, agent.ExpiryFar},
		{"under 20% left", 80*time.Hour + time.Second, 0.2, agent.ExpirySoon},
		{"one second left", 100*time.Hour - time.Second, 0.2, agent.ExpirySoon},
		{"at expiry", 100 * time.Hour, 0.2, agent.ExpiryPast},
		{"long expired", 200 * time.Hour, 0.2, agent.ExpiryPast},
		{"custom threshold, 40% left", 60 * time.Hour, 0.5, agent.ExpirySoon},
		{"bad threshold means the default", 75 * time.Hour, 1.5, agent.ExpiryFar},
		{"bad threshold means the default, 10% left", 90 * time.Hour, 0, agent.ExpirySoon},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := agent.ExpiryStageAt(nb, na, tt.fraction, nb.Add(tt.at)); got != tt.want {
				t.Errorf("ExpiryStageAt = %d, want %d", got, tt.want)
			}
		})
	}
}

// TestExpiryWarnedOncePerThreshold gets a certificate, takes the CA away,
// and moves the agent's clock through the certificate's lifetime while
// renewals keep failing: one WARN when less than a fifth of the lifetime
// is left, one ERROR when it has expired, whatever the number of retries;
// none before.
func TestExpiryWarnedOncePerThreshold(t *testing.T) {
	authority := catest.NewAuthority(t, ca.Config{DefaultTTL: time.Hour})
	s := catest.Serve(t, authority)
	token, err := authority.IssueToken("foo", "bar", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	clock := catest.NewClock(time.Now())
	var logs lockedBuffer
	a, err := agent.New(agent.Config{
		CAAddress: s.Addr, CARoots: authority.Bundle(), TrustDomain: td, Namespace: "foo", ServiceAccount: "bar",
		Token:    func() (string, error) { return token, nil },
		Clock:    clock.Now,
		MinRetry: 5 * time.Millisecond, MaxRetry: 10 * time.Millisecond,
		Logger: slog.New(slog.NewJSONHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	// First run: the certificate. Run then sleeps until renewal time by
	// the real clock, so stop it and run again once the CA is gone.
	stop := runAgent(a)
	waitReady(t, a, 10*time.Second)
	stop(t)
	s.Stop()
	svid, err := a.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	leaf := svid.Certificates[0]
	lifetime := leaf.NotAfter.Sub(leaf.NotBefore)
	setClock := func(at time.Time) { clock.Add(at.Sub(clock.Now())) }
	failAFewTimes := func() {
		t.Helper()
		want := a.RenewalFailures() + 3
		deadline := time.Now().Add(10 * time.Second)
		for a.RenewalFailures() < want {
			if time.Now().After(deadline) {
				t.Fatalf("renewals did not keep failing: %+v", a.Status())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	const soon, expired = "certificate expires soon and renewal keeps failing",
		"certificate expired and renewal keeps failing; peers refuse this workload until a renewal succeeds"

	setClock(leaf.NotBefore.Add(lifetime * 6 / 10))
	stop = runAgent(a)
	defer stop(t)
	failAFewTimes()
	if n := logs.count(soon) + logs.count(expired); n != 0 {
		t.Fatalf("warned with 40%% of the lifetime left:\n%s", logs.String())
	}

	setClock(leaf.NotBefore.Add(lifetime * 85 / 100))
	failAFewTimes()
	failAFewTimes()
	if n := logs.count(soon); n != 1 {
		t.Fatalf("%d expiry warnings with 15%% left, want 1:\n%s", n, logs.String())
	}
	line := logs.find(soon)
	if line["level"] != "WARN" || line["identity"] != "spiffe://cluster.local/ns/foo/sa/bar" ||
		line["not_after"] != leaf.NotAfter.UTC().Format(time.RFC3339) || line["err"] == "" {
		t.Errorf("warning = %v", line)
	}

	setClock(leaf.NotAfter.Add(time.Second))
	failAFewTimes()
	failAFewTimes()
	if n, m := logs.count(soon), logs.count(expired); n != 1 || m != 1 {
		t.Fatalf("%d warnings and %d expiry errors after expiry, want 1 and 1:\n%s", n, m, logs.String())
	}
	if line := logs.find(expired); line["level"] != "ERROR" || line["identity"] == nil {
		t.Errorf("expiry error = %v", line)
	}
	if got := a.Rotations(); got != 0 {
		t.Errorf("Rotations = %d, want 0", got)
	}
}

// runAgent runs a until the returned stop is called.
func runAgent(a *agent.Agent) (stop func(*testing.T)) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	return func(t *testing.T) {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
}

// lockedBuffer collects JSON log lines from concurrent writers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *lockedBuffer) lines(msg string) []map[string]any {
	var out []map[string]any
	for _, s := range strings.Split(l.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(s), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

func (l *lockedBuffer) count(msg string) int { return len(l.lines(msg)) }

func (l *lockedBuffer) find(msg string) map[string]any {
	if ls := l.lines(msg); len(ls) > 0 {
		return ls[0]
	}
	return nil
}
