package ui

import (
	"fmt"
	"io"
	"math"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// MaxSeries bounds the request and connection series kept from one
// proxy's metrics: label values partly come from peers, and one proxy
// must not make the control plane hold an unbounded model.
const MaxSeries = 4096

// Series is one counter of a proxy's Istio request or TCP metrics with
// the labels the web view reads.
type Series struct {
	Reporter             string // source or destination
	SourceWorkload       string
	SourceNamespace      string
	SourcePrincipal      string
	DestinationWorkload  string
	DestinationNamespace string
	DestinationPrincipal string
	Service              string // destination_service
	Protocol             string // http, grpc or tcp
	Code                 string // response_code; "" for TCP
	Flags                string // response_flags; "" for TCP
	Security             string // connection_security_policy
	Value                float64
}

// Sample is what the web view reads from one proxy's /metrics.
type Sample struct {
	Series []Series
	// Denied counts denials by deciding policy (zmesh_authz_denied_total).
	Denied map[string]float64
	// CertExpiry is zmesh_cert_expiry_timestamp_seconds: Unix seconds, 0
	// without a certificate.
	CertExpiry      float64
	CertRotations   float64
	RenewalFailures float64
}

// ParseMetrics reads the Prometheus text exposition of a proxy's admin
// /metrics. It keeps at most MaxSeries series and fails on malformed
// input; non-finite or negative counters are dropped.
func ParseMetrics(r io.Reader) (*Sample, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("ui: metrics: %w", err)
	}
	s := &Sample{Denied: map[string]float64{}}
	add := func(f *dto.MetricFamily, protocol string) {
		for _, m := range f.GetMetric() {
			if len(s.Series) >= MaxSeries {
				return
			}
			v := value(m)
			if !counter(v) {
				continue
			}
			l := labelMap(m)
			proto := l["request_protocol"]
			if protocol != "" {
				proto = protocol
			}
			s.Series = append(s.Series, Series{
				Reporter:             l["reporter"],
				SourceWorkload:       l["source_workload"],
				SourceNamespace:      l["source_workload_namespace"],
				SourcePrincipal:      l["source_principal"],
				DestinationWorkload:  l["destination_workload"],
				DestinationNamespace: l["destination_workload_namespace"],
				DestinationPrincipal: l["destination_principal"],
				Service:              l["destination_service"],
				Protocol:             proto,
				Code:                 l["response_code"],
				Flags:                l["response_flags"],
				Security:             l["connection_security_policy"],
				Value:                v,
			})
		}
	}
	if f := fams["istio_requests_total"]; f != nil {
		add(f, "")
	}
	if f := fams["istio_tcp_connections_opened_total"]; f != nil {
		add(f, "tcp")
	}
	if f := fams["zmesh_authz_denied_total"]; f != nil {
		for _, m := range f.GetMetric() {
			if v := value(m); counter(v) && len(s.Denied) < MaxSeries {
				s.Denied[labelMap(m)["policy"]] += v
			}
		}
	}
	s.CertExpiry = gauge(fams["zmesh_cert_expiry_timestamp_seconds"])
	s.CertRotations = counterOf(fams["zmesh_cert_rotations_total"])
	s.RenewalFailures = counterOf(fams["zmesh_cert_renewal_failures_total"])
	return s, nil
}

// value is a sample's value whether its family was typed counter, gauge
// or not at all.
func value(m *dto.Metric) float64 {
	switch {
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetUntyped() != nil:
		return m.GetUntyped().GetValue()
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	}
	return math.NaN()
}

func counter(v float64) bool { return v >= 0 && !math.IsInf(v, 0) && !math.IsNaN(v) }

func labelMap(m *dto.Metric) map[string]string {
	out := make(map[string]string, len(m.GetLabel()))
	for _, lp := range m.GetLabel() {
		out[lp.GetName()] = lp.GetValue()
	}
	return out
}

func gauge(f *dto.MetricFamily) float64 {
	if f == nil || len(f.GetMetric()) == 0 {
		return 0
	}
	v := value(f.GetMetric()[0])
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return 0
	}
	return v
}

func counterOf(f *dto.MetricFamily) float64 {
	if f == nil || len(f.GetMetric()) == 0 {
		return 0
	}
	if v := value(f.GetMetric()[0]); counter(v) {
		return v
	}
	return 0
}
