package csr

import (
	"math"
	"sync"
	"time"
)

// RateLimit bounds how many certificates one identity may be issued: a
// token bucket per SPIFFE ID holding up to Burst issuances, refilled at Rate
// per second. A healthy agent asks once per half certificate lifetime, so a
// caller above the limit is in a restart loop or is hostile; either way the
// signing key and the CPU are better spent on others. Keep Burst above the
// replica count of the largest deployment, whose pods share an identity and
// may all start at once.
type RateLimit struct {
	// Rate is the sustained issuances per second per identity; 0 means
	// DefaultRateLimit's, negative disables the limit.
	Rate float64
	// Burst is the bucket size; 0 means DefaultRateLimit's.
	Burst int
}

// DefaultRateLimit allows each identity 10 certificates a second after a
// burst of 100.
var DefaultRateLimit = RateLimit{Rate: 10, Burst: 100}

// maxBuckets bounds the limiter's memory; idle buckets are dropped first.
const maxBuckets = 1 << 16

// limiter is a set of token buckets keyed by identity. It is safe for
// concurrent use; time comes from clock.
type limiter struct {
	rate  float64
	burst float64
	clock func() time.Time

	mu        sync.Mutex
	buckets   map[string]*bucket
	lastSweep time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

// newLimiter returns nil (no limit) for a negative rate.
func newLimiter(rl RateLimit, clock func() time.Time) *limiter {
	if rl.Rate < 0 {
		return nil
	}
	if rl.Rate == 0 {
		rl.Rate = DefaultRateLimit.Rate
	}
	if rl.Burst <= 0 {
		rl.Burst = max(DefaultRateLimit.Burst, int(math.Ceil(rl.Rate)))
	}
	return &limiter{rate: rl.Rate, burst: float64(rl.Burst), clock: clock, buckets: map[string]*bucket{}}
}

// allow takes one token from key's bucket. If there is none, it returns
// false and how long until there will be.
func (l *limiter) allow(key string) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	now := l.clock()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweep(now)
	b, ok := l.buckets[key]
	if !ok {
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[key] = b
	}
	if elapsed := now.Sub(b.last); elapsed > 0 {
		b.tokens = min(l.burst, b.tokens+elapsed.Seconds()*l.rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
}

// sweep drops buckets that have refilled completely (they behave exactly
// like a missing one) once a minute, or at once when the map is full.
func (l *limiter) sweep(now time.Time) {
	if len(l.buckets) < maxBuckets && now.Sub(l.lastSweep) < time.Minute {
		return
	}
	l.lastSweep = now
	full := time.Duration(l.burst / l.rate * float64(time.Second))
	for k, b := range l.buckets {
		if now.Sub(b.last) >= full {
			delete(l.buckets, k)
		}
	}
	if len(l.buckets) >= maxBuckets {
		// Every bucket is busy: an identity flood. Forgetting them all
		// errs on the side of issuing, and the log shows the flood.
		clear(l.buckets)
	}
}
