package agent

import (
	"testing"
	"time"
)

func TestRenewIn(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		nb, na   time.Time
		fraction float64
		now      time.Time
		want     time.Duration
	}{
		{name: "fresh 24h cert renews at half-life", nb: t0, na: t0.Add(24 * time.Hour), fraction: 0.5, now: t0, want: 12 * time.Hour},
		{name: "later in life waits less", nb: t0, na: t0.Add(24 * time.Hour), fraction: 0.5, now: t0.Add(10 * time.Hour), want: 2 * time.Hour},
		{name: "exactly at the renewal time is due", nb: t0, na: t0.Add(24 * time.Hour), fraction: 0.5, now: t0.Add(12 * time.Hour), want: 0},
		{name: "past the renewal time is due", nb: t0, na: t0.Add(24 * time.Hour), fraction: 0.5, now: t0.Add(13 * time.Hour), want: 0},
		{name: "expired is due", nb: t0, na: t0.Add(time.Hour), fraction: 0.5, now: t0.Add(2 * time.Hour), want: 0},
		{name: "custom fraction", nb: t0, na: t0.Add(10 * time.Second), fraction: 0.8, now: t0, want: 8 * time.Second},
		{name: "zero fraction means the default", nb: t0, na: t0.Add(10 * time.Second), fraction: 0, now: t0, want: 5 * time.Second},
		{name: "fraction of one means the default", nb: t0, na: t0.Add(10 * time.Second), fraction: 1, now: t0, want: 5 * time.Second},
		{name: "negative fraction means the default", nb: t0, na: t0.Add(10 * time.Second), fraction: -0.3, now: t0, want: 5 * time.Second},
		{name: "backdated cert counts from notBefore", nb: t0.Add(-time.Minute), na: t0.Add(59 * time.Minute), fraction: 0.5, now: t0, want: 29 * time.Minute},
		{name: "clock before notBefore waits the full span", nb: t0, na: t0.Add(2 * time.Second), fraction: 0.5, now: t0.Add(-time.Second), want: 2 * time.Second},
		{name: "inverted lifetime is due", nb: t0, na: t0.Add(-time.Hour), fraction: 0.5, now: t0, want: 0},
		{name: "zero lifetime is due", nb: t0, na: t0, fraction: 0.5, now: t0, want: 0},
		{name: "short test lifetime", nb: t0, na: t0.Add(2200 * time.Millisecond), fraction: 0.5, now: t0.Add(200 * time.Millisecond), want: 900 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := RenewIn(tt.nb, tt.na, tt.fraction, tt.now); got != tt.want {
				t.Errorf("RenewIn = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	const min, max = 100 * time.Millisecond, 2 * time.Second
	tests := []struct {
		attempt int
		want    time.Duration
	}{
		{attempt: 0, want: min},
		{attempt: 1, want: min},
		{attempt: 2, want: 200 * time.Millisecond},
		{attempt: 3, want: 400 * time.Millisecond},
		{attempt: 5, want: 1600 * time.Millisecond},
		{attempt: 6, want: max},
		{attempt: 1000, want: max},
	}
	for _, tt := range tests {
		if got := Backoff(tt.attempt, min, max); got != tt.want {
			t.Errorf("Backoff(%d) = %s, want %s", tt.attempt, got, tt.want)
		}
	}
	for range 100 {
		if j := jitter(time.Second); j < 500*time.Millisecond || j >= time.Second {
			t.Fatalf("jitter(1s) = %s, want in [500ms, 1s)", j)
		}
	}
}
