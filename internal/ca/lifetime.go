package ca

import (
	"os"
	"path/filepath"
	"strings"
	"time"
)

// lifetimeFile records, in the data dir, the workload certificate lifetime
// of the control plane that last loaded it, so that `zmesh ca rotate`,
// a separate process, waits at least one lifetime between steps without
// being told it (a mesh run with --cert-ttl 10s rotates in seconds, one
// with 24h certificates waits a day).
const lifetimeFile = "cert-ttl"

// recordLifetime writes ttl to the data dir. A failure is not fatal to the
// CA: rotation then falls back to its own default.
func recordLifetime(dir string, ttl time.Duration) error {
	return os.WriteFile(filepath.Join(dir, lifetimeFile), []byte(ttl.String()+"\n"), 0o600)
}

// LifetimeInForce returns the workload certificate lifetime the control
// plane using dir issues, as it recorded it; false when none is recorded
// or the record is unreadable.
func LifetimeInForce(dir string) (time.Duration, bool) {
	b, err := os.ReadFile(filepath.Join(dir, lifetimeFile))
	if err != nil || len(b) > 64 {
		return 0, false
	}
	d, err := time.ParseDuration(strings.TrimSpace(string(b)))
	if err != nil || d <= 0 {
		return 0, false
	}
	return d, true
}
