package ca_test

import (
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/zmesh/zmesh/internal/ca"
	"github.com/zmesh/zmesh/internal/ca/catest"
)

// TestIssueWithinSignerValidity moves the CA's clock around its signing
// chain's validity: a leaf is issued only when it can lie wholly within the
// validity of every certificate of the chain, and is never inverted
// (NotAfter before NotBefore), as it was when an expired CA kept issuing.
func TestIssueWithinSignerValidity(t *testing.T) {
	start := time.Now().Truncate(time.Second)
	const rootTTL = 10 * time.Hour
	tests := []struct {
		name string
		// at is the clock when signing, relative to the root's creation.
		at        time.Duration
		ttl       time.Duration
		wantErr   error
		wantTTL   time.Duration // the leaf's NotAfter - at
		truncated bool
	}{
		{name: "well within the root's life", at: time.Hour, ttl: time.Hour, wantTTL: time.Hour},
		{name: "past the root's expiry", at: rootTTL + time.Minute, ttl: time.Hour, wantErr: ca.ErrCAExpired},
		{name: "long past the root's expiry", at: 1000 * rootTTL, ttl: time.Hour, wantErr: ca.ErrCAExpired},
		{name: "at the root's last second", at: rootTTL, ttl: time.Hour, wantErr: ca.ErrCAExpired},
		{name: "before the root's start", at: -2 * time.Hour, ttl: time.Hour, wantErr: ca.ErrCANotYetValid},
		{name: "root expires sooner than asked: clamped to the root", at: rootTTL - 30*time.Minute, ttl: time.Hour, wantTTL: 30 * time.Minute, truncated: true},
		{name: "root expires too soon for a useful leaf", at: rootTTL - ca.MinLeafTTL + time.Second, ttl: time.Hour, wantErr: ca.ErrCAExpired},
		{name: "a short lifetime asked is still served near the end", at: rootTTL - time.Minute, ttl: 10 * time.Second, wantTTL: 10 * time.Second},
		{name: "a short lifetime that does not fit either", at: rootTTL - 5*time.Second, ttl: 10 * time.Second, wantErr: ca.ErrCAExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := catest.NewClock(start)
			a := catest.NewAuthority(t, ca.Config{RootTTL: rootTTL, MaxTTL: 24 * time.Hour, Clock: clock.Now})
			root := a.SigningCertificate()
			clock.Add(tt.at)
			now := clock.Now()
			is, err := a.Issue(parseCSR(t, catest.CSR(t, catest.NewKey(t))), workload, tt.ttl)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Issue err = %v, want %v", err, tt.wantErr)
				}
				if is != nil {
					t.Fatal("Issue returned a certificate with its error")
				}
				return
			}
			if err != nil {
				t.Fatalf("Issue: %v", err)
			}
			leaf := is.Chain[0]
			if !leaf.NotBefore.Before(leaf.NotAfter) {
				t.Fatalf("inverted leaf: NotBefore %s, NotAfter %s", leaf.NotBefore, leaf.NotAfter)
			}
			if leaf.NotBefore.Before(root.NotBefore) || leaf.NotAfter.After(root.NotAfter) {
				t.Errorf("leaf [%s, %s] outside its root [%s, %s]", leaf.NotBefore, leaf.NotAfter, root.NotBefore, root.NotAfter)
			}
			if got := leaf.NotAfter.Sub(now); got > tt.wantTTL || got < tt.wantTTL-time.Second {
				t.Errorf("leaf lifetime from now = %s, want %s", got, tt.wantTTL)
			}
			if is.Truncated != tt.truncated {
				t.Errorf("Truncated = %v, want %v", is.Truncated, tt.truncated)
			}
			verifyChain(t, a, is.Chain, workload)
		})
	}
}

// TestIssueRefusesWithExpiredIntermediate: a plugged-in intermediate that
// expires before its root ends issuance at its own expiry, and a leaf never
// starts before the intermediate does.
func TestIssueRefusesWithExpiredIntermediate(t *testing.T) {
	now := time.Now()
	root := newTestCA(t, "root", nil, caOpts{notBefore: now.Add(-48 * time.Hour), notAfter: now.Add(365 * 24 * time.Hour)})
	inter := newTestCA(t, "inter", root, caOpts{notBefore: now.Add(-10 * time.Second), notAfter: now.Add(2 * time.Hour)})
	dir := t.TempDir()
	writeCACerts(t, dir, inter, []*x509.Certificate{inter.cert, root.cert}, root)
	clock := catest.NewClock(now)
	a := catest.NewAuthority(t, ca.Config{DataDir: dir, Clock: clock.Now})

	// The backdate would start the leaf before the intermediate: clamped.
	is, err := a.Issue(parseCSR(t, catest.CSR(t, catest.NewKey(t))), workload, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if leaf := is.Chain[0]; leaf.NotBefore.Before(inter.cert.NotBefore) {
		t.Errorf("leaf starts %s, before its CA %s", leaf.NotBefore, inter.cert.NotBefore)
	}
	lt := a.Lifetime()
	if !lt.NotAfter.Equal(inter.cert.NotAfter) || !lt.Root.Equal(root.cert.NotAfter) || !lt.NotBefore.Equal(inter.cert.NotBefore) {
		t.Errorf("Lifetime = %+v, want the intermediate's bounds and the root's expiry", lt)
	}

	clock.Add(3 * time.Hour)
	if _, err := a.Issue(parseCSR(t, catest.CSR(t, catest.NewKey(t))), workload, time.Hour); !errors.Is(err, ca.ErrCAExpired) {
		t.Fatalf("Issue with an expired intermediate: err = %v, want ErrCAExpired", err)
	}
	if _, err := a.ServingCertificate(); !errors.Is(err, ca.ErrCAExpired) {
		t.Fatalf("ServingCertificate with an expired intermediate: err = %v, want ErrCAExpired", err)
	}
}

func TestLifetimeCheck(t *testing.T) {
	now := time.Date(2030, 6, 1, 0, 0, 0, 0, time.UTC)
	lt := ca.Lifetime{NotBefore: now.Add(-time.Hour), NotAfter: now.Add(40 * 24 * time.Hour), Root: now.Add(400 * 24 * time.Hour)}
	tests := []struct {
		name string
		at   time.Time
		want ca.ExpiryState
	}{
		{name: "far from expiry", at: now, want: ca.ExpiryOK},
		{name: "within the warning", at: now.Add(20 * 24 * time.Hour), want: ca.ExpiryNear},
		{name: "expired", at: now.Add(41 * 24 * time.Hour), want: ca.ExpiryPast},
		{name: "not yet valid", at: now.Add(-2 * time.Hour), want: ca.ExpiryNotYet},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := lt.Check(tt.at, 30*24*time.Hour); got != tt.want {
				t.Errorf("Check = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestWatchAlertsOnExpiry runs Watch with a moving clock: nothing is logged
// while the CA is far from expiry, a warning once it is near, an error once
// it has expired.
func TestWatchAlertsOnExpiry(t *testing.T) {
	clock := catest.NewClock(time.Now())
	a := catest.NewAuthority(t, ca.Config{RootTTL: 90 * 24 * time.Hour, Clock: clock.Now})
	logs := make(chan slog.Record, 64)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.Watch(ctx, 5*time.Millisecond, slog.New(recordHandler(logs)))
	}()
	defer func() { cancel(); <-done }()

	// await returns once a record of level whose message holds msg came.
	await := func(level slog.Level, msg string) {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case r := <-logs:
				if r.Level == level && strings.Contains(r.Message, msg) {
					return
				}
			case <-timeout:
				t.Fatalf("no %s log %q within 10s", level, msg)
			}
		}
	}
	clock.Add(80 * 24 * time.Hour) // 10 days left
	await(slog.LevelWarn, "CA expires soon")
	clock.Add(11 * 24 * time.Hour)
	await(slog.LevelError, "CA expired")
}

// recordHandler sends every record to ch, dropping when ch is full.
type recordHandler chan<- slog.Record

func (h recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h recordHandler) Handle(_ context.Context, r slog.Record) error {
	select {
	case h <- r.Clone():
	default:
	}
	return nil
}
func (h recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h recordHandler) WithGroup(string) slog.Handler      { return h }
