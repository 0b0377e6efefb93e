package tracing

import (
	"math"
	"math/rand/v2"
	"regexp"
	"testing"
)

func TestSample(t *testing.T) {
	const max = math.MaxUint64
	cases := []struct {
		name    string
		parent  Decision
		debug   bool
		percent float64
		r       uint64
		want    bool
	}{
		{"parent sampled beats 0%", Sampled, false, 0, max, true},
		{"parent not sampled beats 100%", NotSampled, false, 100, 0, false},
		{"debug beats parent", NotSampled, true, 0, max, true},
		{"undecided at 0%", Undecided, false, 0, 0, false},
		{"undecided at 100%", Undecided, false, 100, max, true},
		{"undecided low draw at 50%", Undecided, false, 50, 0, true},
		{"undecided high draw at 50%", Undecided, false, 50, max, false},
		{"NaN samples nothing", Undecided, false, math.NaN(), 0, false},
		{"over 100 is 100", Undecided, false, 1000, max, true},
		{"negative is 0", Undecided, false, -5, 0, false},
	}
	for _, tc := range cases {
		if got := Sample(tc.parent, tc.debug, tc.percent, tc.r); got != tc.want {
			t.Errorf("%s: Sample = %v", tc.name, got)
		}
	}
}

func TestSampleRate(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, pct := range []float64{1, 25, 80} {
		n := 0
		const total = 100000
		for range total {
			if Sample(Undecided, false, pct, rng.Uint64()) {
				n++
			}
		}
		got := float64(n) * 100 / total
		if math.Abs(got-pct) > 0.6 {
			t.Errorf("%v%%: sampled %.2f%%", pct, got)
		}
	}
}

func TestIDs(t *testing.T) {
	zeroThenOne := func() func() uint64 {
		n := uint64(0)
		return func() uint64 { n++; return n / 3 } // 0, 0, 1, 1, 1, 2...
	}
	g := IDs{Rand: zeroThenOne()}
	if !g.TraceID().IsValid() || !g.SpanID().IsValid() {
		t.Error("an all-zero ID was returned")
	}
	uuid := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	var crypto IDs
	a, b := crypto.RequestID(), crypto.RequestID()
	if !uuid.MatchString(a) || a == b {
		t.Errorf("request IDs %q, %q", a, b)
	}
}
