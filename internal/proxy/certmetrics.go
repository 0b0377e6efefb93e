package proxy

import (
	"crypto/x509"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// RenewalCounter is optionally implemented by a CertificateSource that
// renews its own certificate, as the agent does. The proxy then exports
// the counts on /metrics, next to the expiry of the certificate in use.
type RenewalCounter interface {
	// Rotations returns how many certificates have replaced an earlier
	// one.
	Rotations() uint64
	// RenewalFailures returns how many certificate requests have failed.
	RenewalFailures() uint64
}

// registerCertMetrics exports the state of the workload certificate, so
// that an alert can fire before a proxy that cannot renew loses its
// identity: its expiry as a timestamp and as seconds from now (negative
// once expired), and, from a RenewalCounter source, rotations and failed
// renewals. All are read from Certs at scrape time.
func (p *Proxy) registerCertMetrics() {
	cs := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "zmesh_cert_expiry_timestamp_seconds",
			Help: "When the workload certificate in use expires (Unix seconds); 0 without one.",
		}, func() float64 {
			leaf := p.leaf()
			if leaf == nil {
				return 0
			}
			return float64(leaf.NotAfter.UnixNano()) / float64(time.Second)
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "zmesh_cert_expires_in_seconds",
			Help: "Seconds until the workload certificate in use expires, negative once it has; 0 without one.",
		}, func() float64 {
			leaf := p.leaf()
			if leaf == nil {
				return 0
			}
			return leaf.NotAfter.Sub(p.now()).Seconds()
		}),
	}
	if rc, ok := p.cfg.Certs.(RenewalCounter); ok {
		cs = append(cs,
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "zmesh_cert_rotations_total",
				Help: "Workload certificates that replaced an earlier one.",
			}, func() float64 { return float64(rc.Rotations()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "zmesh_cert_renewal_failures_total",
				Help: "Failed workload certificate requests (each retry counts).",
			}, func() float64 { return float64(rc.RenewalFailures()) }),
		)
	}
	for _, c := range cs {
		if err := p.registry.Register(c); err != nil {
			p.log.Warn("cannot register certificate metric", "err", err)
		}
	}
}

// leaf returns the certificate in use, nil without one.
func (p *Proxy) leaf() *x509.Certificate {
	s, err := p.cfg.Certs.GetX509SVID()
	if err != nil || s == nil || len(s.Certificates) == 0 {
		return nil
	}
	return s.Certificates[0]
}
