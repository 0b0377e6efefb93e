package controlplane

import (
	"log/slog"
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
// otherwise), leaves it alone when told to (GOGC set), and restores the
// previous one when it returns.
func TestGCPercent(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	for _, tt := range []struct {
		name      string
		gcPercent int
		want      int
	}{
		{"default", 0, DefaultGCPercent},
		{"configured", 80, 80},
		{"left alone", -1, 100},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{DataDir: t.TempDir(), ConfigDir: t.TempDir(), Listen: "127.0.0.1:0", Admin: "", GCPercent: tt.gcPercent,
				Logger: slog.New(slog.DiscardHandler)}
			stop := runControlPlane(t, cfg)
			deadline := time.Now().Add(10 * time.Second)
			for gogc() != tt.want && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			time.Sleep(200 * time.Millisecond) // Run is up by now
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
