package kubesource

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zmesh/zmesh/internal/config"
)

// metrics are the source's Prometheus metrics; a nil *metrics records
// nothing.
type metrics struct {
	rejected   *prometheus.GaugeVec
	rejections *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &metrics{
		rejected: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "zmesh_config_rejected_objects",
			Help: "Istio objects in the cluster that zmesh rejected and left out of the config in force, by kind.",
		}, []string{"kind"}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zmesh_config_rejections_total",
			Help: "Versions of Istio objects in the cluster that zmesh rejected, by kind.",
		}, []string{"kind"}),
	}
	for _, c := range []prometheus.Collector{m.rejected, m.rejections} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("kubesource: metrics: %w", err)
		}
	}
	for _, k := range istioKinds {
		m.rejected.WithLabelValues(string(k.kind))
		m.rejections.WithLabelValues(string(k.kind))
	}
	return m, nil
}

func (m *metrics) setRejected(counts map[config.Kind]int) {
	if m == nil {
		return
	}
	for _, k := range istioKinds {
		m.rejected.WithLabelValues(string(k.kind)).Set(float64(counts[k.kind]))
	}
}

func (m *metrics) rejection(kind config.Kind) {
	if m == nil {
		return
	}
	m.rejections.WithLabelValues(string(kind)).Inc()
}
