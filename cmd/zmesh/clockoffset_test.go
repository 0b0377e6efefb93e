//go:build !zmesh_dataplane

package main

import (
	"testing"
	"time"

	"github.com/spf13/cobra"
)

// TestClockOffsetIsAHiddenTestHook checks that the clock-skew test hooks
// (docs/reliability.md) parse as durations and stay out of --help: they
// are for the reliability suite, not for running a mesh.
func TestClockOffsetIsAHiddenTestHook(t *testing.T) {
	for _, tt := range []struct {
		cmd  *cobra.Command
		flag string
		arg  string
	}{
		{controlplaneCmd(), "clock-offset", "-5m"},
		{proxyCmd(), "clock-offset", "5m"},
		{upCmd(), "clock-offset", "5m"},
		{upCmd(), "proxy-clock-offset", "5m,-5m"},
	} {
		f := tt.cmd.Flags().Lookup(tt.flag)
		if f == nil {
			t.Errorf("%s: no --%s", tt.cmd.Name(), tt.flag)
			continue
		}
		if !f.Hidden {
			t.Errorf("%s --%s shows in --help", tt.cmd.Name(), tt.flag)
		}
		if err := tt.cmd.Flags().Set(tt.flag, tt.arg); err != nil {
			t.Errorf("%s --%s %s: %v", tt.cmd.Name(), tt.flag, tt.arg, err)
		}
	}
	if now, got := time.Now(), offsetClock(-5*time.Minute)(); got.Sub(now) > -5*time.Minute+time.Second || got.Sub(now) < -5*time.Minute {
		t.Errorf("offsetClock(-5m) is %s off", got.Sub(now))
	}
}
