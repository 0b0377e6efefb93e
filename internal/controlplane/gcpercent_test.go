package controlplane

import (
	"log/slog"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

// gogc reads the GC's target percentage without changing it.
func gogc() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}

// TestGCPercent: Run sets the GC target (DefaultGCPercent unless told
// otherwise, raised for a small heap to keep GCHeadroom), leaves it alone
// when told to (GOGC set), and restores the previous one when it
// returns.
func TestGCPercent(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	for _, tt := range []struct {
		name      string
		gcPercent int
		headroom  uint64
		want      int
	}{
		{"default, no floor to speak of", 0, 1, DefaultGCPercent},
		{"configured", 80, 1, 80},
		{"a floor above this test's heap", 0, 1 << 40, maxGCPercent},
		{"left alone", -1, 0, 100},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{DataDir: t.TempDir(), ConfigDir: t.TempDir(), Listen: "127.0.0.1:0", Admin: "", GCPercent: tt.gcPercent,
				GCHeadroom: tt.headroom, Logger: slog.New(slog.DiscardHandler)}
			stop := runControlPlane(t, cfg)
			deadline := time.Now().Add(10 * time.Second)
			for gogc() != tt.want && time.Now().Before(deadline) {
				runtime.GC() // the target follows each collection
				time.Sleep(10 * time.Millisecond)
			}
			time.Sleep(200 * time.Millisecond) // Run is up by now
			runtime.GC()
			time.Sleep(10 * time.Millisecond) // the finalizer runs after the cycle
			if got := gogc(); got != tt.want {
				t.Errorf("GC target %d while running, want %d", got, tt.want)
			}
			stop()
			if got := gogc(); got != 100 {
				t.Errorf("GC target %d after Run returned, want the previous 100", got)
			}
		})
	}
}

func TestGCPercentFor(t *testing.T) {
	const MiB = 1 << 20
	for _, tc := range []struct {
		live    uint64
		percent int
		floor   uint64
		want    int
	}{
		{500 * MiB, 50, 64 * MiB, 50},    // 10,000 proxies: the percentage
		{100 * MiB, 50, 64 * MiB, 64},    // the floor: 64 MiB of 100
		{16 * MiB, 50, 64 * MiB, 400},    // the CA under load, few proxies
		{1 * MiB, 50, 64 * MiB, 1000},    // capped
		{0, 50, 64 * MiB, 1000},          // no collection yet
		{1000 * MiB, 150, 64 * MiB, 150}, // a percentage above the floor
		{3 * MiB, 50, 64 * MiB, 1000},    // 2,134% capped
	} {
		if got := gcPercentFor(tc.live, tc.percent, tc.floor); got != tc.want {
			t.Errorf("gcPercentFor(%d MiB, %d, %d MiB) = %d, want %d", tc.live/MiB, tc.percent, tc.floor/MiB, got, tc.want)
		}
	}
}
