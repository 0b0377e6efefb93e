package localmesh

import (
	"slices"
	"testing"
	"time"
)

// TestClockOffsets checks the clock-skew test hooks reach the processes:
// the control plane's offset on its command line, the proxies' cycled
// over the workloads in order.
func TestClockOffsets(t *testing.T) {
	cfg := Config{Binary: "zmesh", TrustDomain: "cluster.local", ControlPlaneClockOffset: -5 * time.Minute,
		ProxyClockOffsets: []time.Duration{5 * time.Minute, -5 * time.Minute}}
	cp, err := controlPlaneProcess(cfg, "dir", "data", "127.0.0.1:1", "127.0.0.1:2", "")
	if err != nil {
		t.Fatal(err)
	}
	if i := slices.Index(cp.argv, "--clock-offset"); i < 0 || cp.argv[i+1] != "-5m0s" {
		t.Errorf("control plane argv %q lacks --clock-offset -5m0s", cp.argv)
	}
	want := []time.Duration{5 * time.Minute, -5 * time.Minute, 5 * time.Minute, -5 * time.Minute, 5 * time.Minute}
	for i, w := range want {
		if got := cfg.proxyClockOffset(i); got != w {
			t.Errorf("proxy %d: offset %s, want %s", i, got, w)
		}
	}
	if got := (Config{}).proxyClockOffset(3); got != 0 {
		t.Errorf("no offsets: proxy 3 offset %s, want 0", got)
	}
	if cp, _ := controlPlaneProcess(Config{Binary: "zmesh"}, "dir", "data", "a", "b", ""); slices.Contains(cp.argv, "--clock-offset") {
		t.Errorf("no offset, yet argv %q", cp.argv)
	}
}
