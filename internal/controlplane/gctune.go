package controlplane

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// DefaultGCHeadroom is the least the heap may grow between collections,
// whatever the GC target percentage says (see gcPercentFor).
const DefaultGCHeadroom = 64 << 20

// maxGCPercent bounds the target gcPercentFor raises for a small live
// heap: the headroom is then at most ten times the live heap.
const maxGCPercent = 1000

// gcPercentFor is the GC target percentage (GOGC) for a live heap of
// live bytes: percent, raised so that the heap may grow by at least floor
// bytes between collections, and at most maxGCPercent.
//
// Why a floor: the control plane's two loads want opposite targets. With
// thousands of proxies the live heap is hundreds of MiB of per-connection
// state that makes no garbage, and the headroom above it (as large as
// the live heap with Go's default of 100) is what a reconnect wave's
// handshake garbage fills: a low percentage bounds that peak. The CA
// signing thousands of certificates a second with few proxies connected
// has a live heap of a few MiB and makes garbage at every issuance: a
// proportional headroom of a few MiB means a collection every few
// milliseconds, and at 50% a fifth of its throughput went to the GC
// (bench/ca: 4,717–4,788 against 5,774–5,978 issuances/s at 100). A
// floor of a few tens of MiB costs the small mesh nothing it would miss
// and leaves the large one its percentage.
func gcPercentFor(live uint64, percent int, floor uint64) int {
	if live == 0 {
		return maxGCPercent
	}
	p := int(min((floor*100+live-1)/live, maxGCPercent))
	return min(max(p, percent), maxGCPercent)
}

// liveHeap is the heap the last collection marked live.
func liveHeap() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// tuneGC sets the GC target to percent, then after every collection to
// gcPercentFor the heap that collection found live, until the returned
// stop is called; stop restores the target found at the start. Following
// every collection (a finalizer on an object made unreachable each
// cycle, the usual way to hear of one) keeps the target in step with a
// heap that grows fast, as while a large configuration loads: a target
// computed for the small heap of a second earlier would let the larger
// one grow tenfold.
func tuneGC(percent int, floor uint64) (stop func()) {
	t := &gcTuner{percent: percent, floor: floor, cur: percent}
	prev := debug.SetGCPercent(percent)
	t.arm()
	return func() {
		t.mu.Lock()
		t.stopped = true
		debug.SetGCPercent(prev)
		t.mu.Unlock()
	}
}

// gcTuner is tuneGC's state, touched by the finalizer goroutine after
// each collection and by stop.
type gcTuner struct {
	percent int
	floor   uint64

	mu      sync.Mutex
	cur     int
	stopped bool
}

// gcSentinel is the object whose finalizer runs once per collection.
type gcSentinel struct{ _ [16]byte }

func (t *gcTuner) arm() {
	runtime.SetFinalizer(&gcSentinel{}, func(*gcSentinel) { t.collected() })
}

// collected runs after a collection: it sets the target for the heap
// that collection found live, and arms the next sentinel.
func (t *gcTuner) collected() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return
	}
	if want := gcPercentFor(liveHeap(), t.percent, t.floor); want != t.cur {
		debug.SetGCPercent(want)
		t.cur = want
	}
	t.arm()
}
