package tracing

import "math"

// Sample decides whether a request is traced, as Envoy does: a decision
// that came with the request (an upstream tracer's sampled flag, or B3
// debug) is honoured either way; otherwise the request is sampled with
// probability percent/100, drawn from r, a uniformly random 64-bit number
// the caller supplies (so that the decision is pure and testable).
// percent outside [0, 100] is clamped; NaN samples nothing.
func Sample(parent Decision, debug bool, percent float64, r uint64) bool {
	if debug {
		return true
	}
	switch parent {
	case Sampled:
		return true
	case NotSampled:
		return false
	}
	if !(percent > 0) { // also NaN
		return false
	}
	if percent >= 100 {
		return true
	}
	// 53 random bits as a float in [0, 1), against the rate.
	return float64(r>>11)/(1<<53) < percent/100
}

// ClampPercent returns p within [0, 100] (NaN: 0): what Sample makes of it,
// for display.
func ClampPercent(p float64) float64 {
	if math.IsNaN(p) || p < 0 {
		return 0
	}
	return min(p, 100)
}
