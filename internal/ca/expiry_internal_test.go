package ca

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// countHandler counts records at or above Warn.
type countHandler struct{ n *atomic.Int32 }

func (h countHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h countHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		h.n.Add(1)
	}
	return nil
}
func (h countHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countHandler) WithGroup(string) slog.Handler      { return h }

// TestExpiryAlarmRepeatsRarely: an unchanged state is logged again only
// after expiryWarnEvery, a new state at once.
func TestExpiryAlarmRepeatsRarely(t *testing.T) {
	now := time.Now()
	a, err := Load(Config{DataDir: t.TempDir(), TrustDomain: spiffeid.RequireTrustDomainFromString("cluster.local"),
		RootTTL: 10 * 24 * time.Hour, Clock: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int32
	log := slog.New(countHandler{&n})
	var alarm expiryAlarm
	alarm.check(a, log) // within the warning window from the start
	for range 100 {
		now = now.Add(time.Second)
		alarm.check(a, log)
	}
	if got := n.Load(); got != 1 {
		t.Fatalf("%d warnings in 100 s, want 1", got)
	}
	now = now.Add(expiryWarnEvery)
	alarm.check(a, log)
	if got := n.Load(); got != 2 {
		t.Fatalf("%d warnings after an hour, want 2", got)
	}
	now = now.Add(10 * 24 * time.Hour)
	alarm.check(a, log)
	if got := n.Load(); got != 3 {
		t.Fatalf("%d logs after expiry, want 3 (the change is logged at once)", got)
	}
}
