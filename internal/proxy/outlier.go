package proxy

import (
	"sync/atomic"
	"time"

	networking "istio.io/api/networking/v1alpha3"
)

// Istio's outlier detection defaults (Envoy's, which Istio leaves in
// place for fields a rule does not set).
const (
	defaultConsecutive5xx   = 5
	defaultBaseEjectionTime = 30 * time.Second
	defaultMaxEjectionPct   = 10
	maxEjectionTime         = 300 * time.Second // Envoy's max_ejection_time
)

// outlierDetector is a DestinationRule's outlierDetection for one
// destination's endpoints, as this client proxy sees them (Envoy's
// passive health checking): an endpoint that answers consecutive5xxErrors
// 5xx in a row (a failed connection counts as 503), or
// consecutiveGatewayErrors 502/503/504 in a row, is ejected for
// baseEjectionTime times the number of times it has been ejected (at
// most 300 s), while no more than maxEjectionPercent of the endpoints
// (at least one) are out. When fewer than minHealthPercent of them are
// in, or none is, every endpoint is used again (Envoy's panic mode).
// Ejections end when their time is up rather than at the next interval.
type outlierDetector struct {
	now        func() time.Time
	c5xx, cgw  int32 // thresholds; 0: that check is off
	base       time.Duration
	maxEjected int32
	minHealthy int32 // endpoints that must be in for ejections to count
	ejected    atomic.Int32
}

// hostHealth is one endpoint's record with its detector.
type hostHealth struct {
	od        *outlierDetector
	c5xx, cgw atomic.Int32
	until     atomic.Int64 // unix nanoseconds the ejection ends; 0: in
	times     atomic.Int32
}

// newOutlierDetector returns the detector of od for n endpoints, nil when
// od is nil or checks nothing.
func newOutlierDetector(od *networking.OutlierDetection, n int, now func() time.Time) *outlierDetector {
	if od == nil || n == 0 {
		return nil
	}
	d := &outlierDetector{now: now, c5xx: defaultConsecutive5xx, base: defaultBaseEjectionTime}
	if v := od.GetConsecutive_5XxErrors(); v != nil {
		d.c5xx = int32(min(v.GetValue(), 1<<30))
	}
	if v := od.GetConsecutiveGatewayErrors(); v != nil {
		d.cgw = int32(min(v.GetValue(), 1<<30))
	}
	if d.c5xx == 0 && d.cgw == 0 {
		return nil
	}
	if b := od.GetBaseEjectionTime(); b != nil && b.AsDuration() > 0 {
		d.base = b.AsDuration()
	}
	pct := int32(defaultMaxEjectionPct)
	if od.GetMaxEjectionPercent() != 0 {
		pct = od.GetMaxEjectionPercent()
	}
	d.maxEjected = max(1, int32(n)*pct/100)
	d.minHealthy = (int32(n)*od.GetMinHealthPercent() + 99) / 100
	return d
}

// in reports whether the endpoint takes requests now, ending its
// ejection when its time is up.
func (h *hostHealth) in() bool {
	if h == nil {
		return true
	}
	u := h.until.Load()
	if u == 0 {
		return true
	}
	if h.od.now().UnixNano() < u {
		return false
	}
	if h.until.CompareAndSwap(u, 0) {
		h.od.ejected.Add(-1)
	}
	return true
}

// report records the outcome of one request or connection: its HTTP
// status (503 for a failed connection, 200 for a TCP stream that
// connected).
func (h *hostHealth) report(code int) {
	if h == nil {
		return
	}
	if code < 500 {
		h.c5xx.Store(0)
		h.cgw.Store(0)
		return
	}
	n5xx := h.c5xx.Add(1)
	var ngw int32
	if code == 502 || code == 503 || code == 504 {
		ngw = h.cgw.Add(1)
	} else {
		h.cgw.Store(0)
	}
	od := h.od
	if od.c5xx > 0 && n5xx >= od.c5xx || od.cgw > 0 && ngw >= od.cgw {
		h.eject()
	}
}

func (h *hostHealth) eject() {
	od := h.od
	if h.until.Load() != 0 {
		return
	}
	for {
		n := od.ejected.Load()
		if n >= od.maxEjected {
			return
		}
		if od.ejected.CompareAndSwap(n, n+1) {
			break
		}
	}
	times := h.times.Add(1)
	d := min(od.base*time.Duration(times), max(maxEjectionTime, od.base))
	if !h.until.CompareAndSwap(0, od.now().Add(d).UnixNano()) {
		od.ejected.Add(-1)
		return
	}
	h.c5xx.Store(0)
	h.cgw.Store(0)
}

// panicking reports whether so many endpoints are out that ejections are
// ignored: fewer than minHealthPercent in (Envoy's panic threshold).
func (od *outlierDetector) panicking(n int) bool {
	return od != nil && int32(n)-od.ejected.Load() < max(od.minHealthy, 1)
}
