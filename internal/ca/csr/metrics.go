package csr

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// signingBuckets span an ECDSA signature (tens of microseconds) to an RSA
// 3072 one on a loaded machine (tens of milliseconds), with room above.
var signingBuckets = []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1}

type metrics struct {
	issued  prometheus.Counter
	refused *prometheus.CounterVec
	signing prometheus.Histogram
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
		signing: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "zmesh_ca_signing_duration_seconds",
			Help:    "Time the CA took to sign one workload certificate (issuances only; authentication and CSR parsing excluded).",
			Buckets: signingBuckets,
		}),
	}
	if reg == nil {
		return m, nil
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.issued, m.refused, m.signing} {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("csr: register metrics: %w", err)
	}
	return m, nil
}
