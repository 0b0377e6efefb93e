package telemetry

import (
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// maxCachedSeries bounds the label-children cache. Label values come partly
// from peers (a source workload name), so past this many distinct label
// sets new ones are recorded without being cached rather than growing
// memory without bound.
const maxCachedSeries = 4096

// durationBuckets are Istio's default buckets for
// istio_request_duration_milliseconds.
var durationBuckets = []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000}

// sizeBuckets are Istio's default buckets for istio_request_bytes and
// istio_response_bytes.
var sizeBuckets = prometheus.ExponentialBuckets(1, 10, 9)

// Metrics holds the proxy's Prometheus collectors. Its methods are safe for
// concurrent use.
type Metrics struct {
	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	reqBytes  *prometheus.HistogramVec
	respBytes *prometheus.HistogramVec

	tcpOpened *prometheus.CounterVec
	tcpClosed *prometheus.CounterVec
	tcpSent   *prometheus.CounterVec
	tcpRecv   *prometheus.CounterVec

	denied     *prometheus.CounterVec
	dryRun     *prometheus.CounterVec
	handshakes *prometheus.CounterVec
	configs    *prometheus.CounterVec
	version    *prometheus.GaugeVec

	mu     sync.RWMutex
	series map[RequestLabels]*requestSeries
}

// requestSeries are the label children of one RequestLabels.
type requestSeries struct {
	requests  prometheus.Counter
	duration  prometheus.Observer
	reqBytes  prometheus.Observer
	respBytes prometheus.Observer
}

// New creates the collectors and registers them with reg.
func New(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "istio_requests_total",
			Help: "Requests handled by the proxy.",
		}, requestLabelNames),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "istio_request_duration_milliseconds",
			Help:    "Request duration in milliseconds.",
			Buckets: durationBuckets,
		}, requestLabelNames),
		reqBytes: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "istio_request_bytes",
			Help:    "Request body sizes in bytes.",
			Buckets: sizeBuckets,
		}, requestLabelNames),
		respBytes: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "istio_response_bytes",
			Help:    "Response body sizes in bytes.",
			Buckets: sizeBuckets,
		}, requestLabelNames),
		tcpOpened: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "istio_tcp_connections_opened_total",
			Help: "TCP connections opened.",
		}, tcpLabelNames),
		tcpClosed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "istio_tcp_connections_closed_total",
			Help: "TCP connections closed.",
		}, tcpLabelNames),
		tcpSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "istio_tcp_sent_bytes_total",
			Help: "Bytes sent to the downstream of TCP connections.",
		}, tcpLabelNames),
		tcpRecv: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "istio_tcp_received_bytes_total",
			Help: "Bytes received from the downstream of TCP connections.",
		}, tcpLabelNames),
		denied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zmesh_authz_denied_total",
			Help: "Requests denied by authorization, by deciding policy (NAMESPACE/NAME, or \"\" when no ALLOW policy matched).",
		}, []string{"policy"}),
		dryRun: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zmesh_authz_dry_run_total",
			Help: "Would-be decisions of requests under istio.io/dry-run policies, by would-be deciding policy (\"\" for a default) and result (allow or deny). Never enforced.",
		}, []string{"policy", "result"}),
		handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zmesh_tls_handshakes_total",
			Help: "Mutual TLS handshakes, by side (server: inbound, client: outbound) and result.",
		}, []string{"side", "result"}),
		configs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zmesh_config_updates_total",
			Help: "Configuration pushes, by result (applied or rejected).",
		}, []string{"result"}),
		version: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "zmesh_config_version_info",
			Help: "The configuration version in force (value 1).",
		}, []string{"version"}),
		series: map[RequestLabels]*requestSeries{},
	}
	for _, c := range []prometheus.Collector{
		m.requests, m.duration, m.reqBytes, m.respBytes,
		m.tcpOpened, m.tcpClosed, m.tcpSent, m.tcpRecv,
		m.denied, m.dryRun, m.handshakes, m.configs, m.version,
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("telemetry: register metrics: %w", err)
		}
	}
	return m, nil
}

// RequestObservation is what one finished request adds to the metrics.
type RequestObservation struct {
	Labels        RequestLabels
	Duration      time.Duration
	RequestBytes  int64
	ResponseBytes int64
}

// ObserveRequest records one finished HTTP request.
func (m *Metrics) ObserveRequest(o *RequestObservation) {
	s := m.seriesFor(&o.Labels)
	s.requests.Inc()
	s.duration.Observe(float64(o.Duration) / float64(time.Millisecond))
	s.reqBytes.Observe(float64(o.RequestBytes))
	s.respBytes.Observe(float64(o.ResponseBytes))
}

func (m *Metrics) seriesFor(l *RequestLabels) *requestSeries {
	m.mu.RLock()
	s, ok := m.series[*l]
	m.mu.RUnlock()
	if ok {
		return s
	}
	vals := l.values()
	s = &requestSeries{
		requests:  m.requests.WithLabelValues(vals...),
		duration:  m.duration.WithLabelValues(vals...),
		reqBytes:  m.reqBytes.WithLabelValues(vals...),
		respBytes: m.respBytes.WithLabelValues(vals...),
	}
	m.mu.Lock()
	if len(m.series) < maxCachedSeries {
		m.series[*l] = s
	}
	m.mu.Unlock()
	return s
}

// TCPConn records one TCP connection: call Opened when it is established
// and Closed once, with the byte counts, when it ends.
type TCPConn struct {
	m    *Metrics
	vals []string
}

// TCPOpened records a new TCP connection and returns the handle that
// records its end.
func (m *Metrics) TCPOpened(l TCPLabels) *TCPConn {
	c := &TCPConn{m: m, vals: l.values()}
	m.tcpOpened.WithLabelValues(c.vals...).Inc()
	return c
}

// Closed records the end of the connection: sent is what went to the
// downstream (the side that opened it), received what came from it.
func (c *TCPConn) Closed(sent, received int64) {
	c.m.tcpClosed.WithLabelValues(c.vals...).Inc()
	c.m.tcpSent.WithLabelValues(c.vals...).Add(float64(sent))
	c.m.tcpRecv.WithLabelValues(c.vals...).Add(float64(received))
}

// Denied records a request denied by authorization under policy
// (NAMESPACE/NAME; empty when no ALLOW policy matched).
func (m *Metrics) Denied(policy string) {
	m.denied.WithLabelValues(policy).Inc()
}

// DryRun records the would-be decision of a request under dry-run
// policies: result is "allow" or "deny", policy the would-be deciding
// policy (NAMESPACE/NAME, "" for a default).
func (m *Metrics) DryRun(policy, result string) {
	m.dryRun.WithLabelValues(policy, result).Inc()
}

// Handshake records a TLS handshake. side is "server" or "client".
func (m *Metrics) Handshake(side string, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.handshakes.WithLabelValues(side, result).Inc()
}

// ConfigApplied records a configuration push: the version now in force,
// or, with a non-nil err, a rejected push (the old version stays).
func (m *Metrics) ConfigApplied(version string, err error) {
	if err != nil {
		m.configs.WithLabelValues("rejected").Inc()
		return
	}
	m.configs.WithLabelValues("applied").Inc()
	m.version.Reset()
	m.version.WithLabelValues(version).Set(1)
}
