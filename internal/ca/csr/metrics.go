package csr

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	issued  prometheus.Counter
	refused *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		issued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zmesh_ca_certificates_issued_total",
			Help: "Workload certificates issued by the CSR service.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zmesh_ca_certificate_refusals_total",
			Help: "Certificate requests refused by the CSR service, by reason.",
		}, []string{"reason"}),
	}
	if reg == nil {
		return m, nil
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.issued, m.refused} {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("csr: register metrics: %w", err)
	}
	return m, nil
}
