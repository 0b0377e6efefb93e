package agent

import "time"

// DefaultRenewAt is the fraction of a certificate's lifetime after which the
// agent renews it: half, as Istio does, which leaves the other half to ride
// out a control-plane outage.
const DefaultRenewAt = 0.5

// RenewalTime returns when a certificate valid from notBefore to notAfter is
// due for renewal: notBefore plus fraction of its lifetime. A fraction
// outside (0, 1) means DefaultRenewAt.
func RenewalTime(notBefore, notAfter time.Time, fraction float64) time.Time {
	if !(fraction > 0 && fraction < 1) {
		fraction = DefaultRenewAt
	}
	lifetime := notAfter.Sub(notBefore)
	if lifetime <= 0 {
		return notBefore
	}
	return notBefore.Add(time.Duration(float64(lifetime) * fraction))
}

// RenewIn returns how long after now the certificate valid from notBefore to
// notAfter should be renewed; 0 means now (already due, expired, or a
// malformed lifetime).
func RenewIn(notBefore, notAfter time.Time, fraction float64, now time.Time) time.Duration {
	return max(RenewalTime(notBefore, notAfter, fraction).Sub(now), 0)
}

// Backoff returns the wait before retry number attempt (1 for the first
// retry): min doubled per attempt, capped at max.
func Backoff(attempt int, min, max time.Duration) time.Duration {
	if attempt < 1 || min <= 0 {
		return min
	}
	d := min
	for i := 1; i < attempt && d < max; i++ {
		d *= 2
	}
	return clamp(d, min, max)
}

func clamp(d, lo, hi time.Duration) time.Duration {
	if d > hi {
		return hi
	}
	if d < lo {
		return lo
	}
	return d
}
