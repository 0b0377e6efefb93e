package csr

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zmesh/zmesh/internal/ca"
)

// signingBuckets span an ECDSA signature (tens of microseconds) to an RSA
// 3072 one on a loaded machine (tens of milliseconds), with room above.
var signingBuckets = []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1}

type metrics struct {
	issued  prometheus.Counter
	refused *prometheus.CounterVec
	signing prometheus.Histogram
	// rootExpiry and chainExpiry read the Authority's signing chain at
	// each scrape, so a reload or rotation shows at once. Their names
	// follow Istio's citadel_server_root_cert_expiry_timestamp and
	// citadel_server_cert_chain_expiry_timestamp, for the same alerts.
	rootExpiry, chainExpiry prometheus.GaugeFunc
}

func newMetrics(reg prometheus.Registerer, a *ca.Authority) (*metrics, error) {
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
		rootExpiry: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "zmesh_ca_root_expiry_timestamp_seconds",
			Help: "Expiry (Unix time) of the root the CA's signing chain ends in.",
		}, func() float64 { return float64(a.Lifetime().Root.Unix()) }),
		chainExpiry: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "zmesh_ca_cert_chain_expiry_timestamp_seconds",
			Help: "Earliest expiry (Unix time) in the CA's signing chain: from then on the CA refuses to issue. Alert well before it.",
		}, func() float64 { return float64(a.Lifetime().NotAfter.Unix()) }),
	}
	if reg == nil {
		return m, nil
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.issued, m.refused, m.signing, m.rootExpiry, m.chainExpiry} {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("csr: register metrics: %w", err)
	}
	return m, nil
}
