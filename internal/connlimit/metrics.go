package connlimit

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the connection counts of one or more Listeners, labelled by
// Config.Name. A nil *Metrics counts nothing.
type Metrics struct {
	refusals *prometheus.CounterVec
	open     *prometheus.GaugeVec
}

// NewMetrics returns Metrics registered with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zmesh_listener_connections_refused_total",
			Help: "Connections closed on accept because their source (per_source) or the listener (total) was at its bound.",
		}, []string{"listener", "reason"}),
		open: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "zmesh_listener_connections_open",
			Help: "Connections a bounded listener holds open.",
		}, []string{"listener"}),
	}
	if reg == nil {
		return m, nil
	}
	if err := errors.Join(reg.Register(m.refusals), reg.Register(m.open)); err != nil {
		return nil, fmt.Errorf("connlimit: register metrics: %w", err)
	}
	return m, nil
}

func (m *Metrics) refused(listener, reason string) {
	if m != nil {
		m.refusals.WithLabelValues(listener, reason).Inc()
	}
}

func (m *Metrics) opened(listener string, delta float64) {
	if m != nil {
		m.open.WithLabelValues(listener).Add(delta)
	}
}

// RefusedCounter returns the refusals counter of one listener and reason,
// for tests and for callers that export it elsewhere.
func (m *Metrics) RefusedCounter(listener, reason string) prometheus.Counter {
	return m.refusals.WithLabelValues(listener, reason)
}

// OpenGauge returns the open-connections gauge of one listener.
func (m *Metrics) OpenGauge(listener string) prometheus.Gauge {
	return m.open.WithLabelValues(listener)
}
