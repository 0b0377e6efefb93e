package telemetry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func sampleLabels() RequestLabels {
	return RequestLabels{
		Reporter:         ReporterDestination,
		Source:           Peer{Workload: "frontend", Namespace: "web", Principal: "spiffe://cluster.local/ns/web/sa/frontend"},
		Destination:      Peer{Workload: "backend", Namespace: "api", Principal: "spiffe://cluster.local/ns/api/sa/backend"},
		Service:          "backend.api.svc.cluster.local",
		ServiceName:      "backend",
		ServiceNamespace: "api",
		Protocol:         "http",
		Code:             200,
		Security:         SecurityMutualTLS,
	}
}

func TestObserveRequestUsesIstioNames(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := New(reg)
	if err != nil {
		t.Fatal(err)
	}
	l := sampleLabels()
	for range 2 {
		m.ObserveRequest(&RequestObservation{Labels: l, Duration: 3 * time.Millisecond, RequestBytes: 10, ResponseBytes: 1024})
	}
	unknown := RequestLabels{Code: 503, Flags: "UH"}
	m.ObserveRequest(&RequestObservation{Labels: unknown})

	got := samples(t, reg, "istio_requests_total")
	want := []string{
		`connection_security_policy=mutual_tls,destination_principal=spiffe://cluster.local/ns/api/sa/backend,destination_service=backend.api.svc.cluster.local,destination_service_name=backend,destination_service_namespace=api,destination_workload=backend,destination_workload_namespace=api,grpc_response_status=,reporter=destination,request_protocol=http,response_code=200,response_flags=-,source_principal=spiffe://cluster.local/ns/web/sa/frontend,source_workload=frontend,source_workload_namespace=web 2`,
		`connection_security_policy=unknown,destination_principal=unknown,destination_service=unknown,destination_service_name=unknown,destination_service_namespace=unknown,destination_workload=unknown,destination_workload_namespace=unknown,grpc_response_status=,reporter=unknown,request_protocol=unknown,response_code=503,response_flags=UH,source_principal=unknown,source_workload=unknown,source_workload_namespace=unknown 1`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("istio_requests_total:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := samples(t, reg, "istio_request_duration_milliseconds"); len(got) != 2 || !strings.HasSuffix(got[0], " 2") {
		t.Errorf("istio_request_duration_milliseconds: %v", got)
	}
}

// samples returns "label=value,... VALUE" for each series of name, sorted
// by labels as the registry sorts them; histograms report their count.
func samples(t *testing.T, reg *prometheus.Registry, name string) []string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, lp := range m.GetLabel() {
				ls = append(ls, lp.GetName()+"="+lp.GetValue())
			}
			out = append(out, strings.Join(ls, ",")+" "+fmt.Sprint(value(m)))
		}
	}
	return out
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return 0
}

func toFloat(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return value(&m)
}

func TestTCPAndCounters(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := New(reg)
	if err != nil {
		t.Fatal(err)
	}
	c := m.TCPOpened(TCPLabels{Reporter: ReporterSource, Service: "example.com", Security: SecurityNone})
	c.Closed(100, 20)
	m.Denied("api/deny-all")
	m.Handshake("server", nil)
	m.Handshake("server", errors.New("bad cert"))
	m.ConfigApplied("v1", nil)
	m.ConfigApplied("v2", errors.New("bad"))
	for name, want := range map[string]float64{
		"istio_tcp_connections_opened_total": 1,
		"istio_tcp_connections_closed_total": 1,
		"istio_tcp_sent_bytes_total":         100,
		"istio_tcp_received_bytes_total":     20,
	} {
		got := samples(t, reg, name)
		if len(got) != 1 || !strings.HasSuffix(got[0], fmt.Sprint(" ", want)) || !strings.Contains(got[0], "destination_service=example.com") {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if got := toFloat(t, m.denied.WithLabelValues("api/deny-all")); got != 1 {
		t.Errorf("denied = %v", got)
	}
	if got := toFloat(t, m.handshakes.WithLabelValues("server", "error")); got != 1 {
		t.Errorf("handshake errors = %v", got)
	}
	if got := toFloat(t, m.version.WithLabelValues("v1")); got != 1 {
		t.Errorf("version v1 = %v (a rejected push must not replace it)", got)
	}
	if got := toFloat(t, m.configs.WithLabelValues("rejected")); got != 1 {
		t.Errorf("rejected = %v", got)
	}
}

func TestSeriesCacheIsBounded(t *testing.T) {
	m, err := New(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	l := sampleLabels()
	for i := range maxCachedSeries + 10 {
		l.Source.Workload = fmt.Sprint("w", i)
		m.ObserveRequest(&RequestObservation{Labels: l})
	}
	if len(m.series) != maxCachedSeries {
		t.Errorf("cache holds %d series, want %d", len(m.series), maxCachedSeries)
	}
}

func TestAccessLog(t *testing.T) {
	var buf bytes.Buffer
	a := NewAccessLog(slog.New(slog.NewJSONHandler(&buf, nil)))
	a.Log(context.Background(), &AccessEntry{Direction: "inbound", Method: "GET", Path: "/admin", Code: 403, Flags: "RBAC",
		Peer: "spiffe://cluster.local/ns/web/sa/stranger", Policy: "api/allow-frontend", Reason: "no ALLOW policy matched", Duration: time.Millisecond})
	line := buf.String()
	for _, want := range []string{`"msg":"access"`, `"status":403`, `"policy":"api/allow-frontend"`, `"reason":"no ALLOW policy matched"`, `"peer":"spiffe://cluster.local/ns/web/sa/stranger"`, `"duration_ms":1`} {
		if !strings.Contains(line, want) {
			t.Errorf("access log %s lacks %s", line, want)
		}
	}
	buf.Reset()
	a.Log(context.Background(), &AccessEntry{Method: "GET", Code: 200})
	if strings.Contains(buf.String(), "policy") {
		t.Errorf("allowed request logs a policy: %s", buf.String())
	}
	var nilLog *AccessLog
	nilLog.Log(context.Background(), &AccessEntry{}) // must not panic
}

func TestAccessLogErrorsOnly(t *testing.T) {
	var buf bytes.Buffer
	a := NewAccessLog(slog.New(slog.NewJSONHandler(&buf, nil))).ErrorsOnly()
	cases := []struct {
		name string
		e    AccessEntry
		want bool
	}{
		{"a successful request is not logged", AccessEntry{Code: 200, Flags: "-"}, false},
		{"a denied request is logged", AccessEntry{Code: 403, Flags: "RBAC", Policy: "api/p"}, true},
		{"a bad token is logged", AccessEntry{Code: 401}, true},
		{"a failed upstream is logged", AccessEntry{Code: 503, Flags: "UF"}, true},
		{"a flagged 200 is logged", AccessEntry{Code: 200, Flags: "UAEX"}, true},
		{"an audited request is logged", AccessEntry{Code: 200, Audit: true, AuditPolicy: "api/audit"}, true},
		{"a dry-run result is logged", AccessEntry{Code: 200, DryRunResult: "deny"}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			buf.Reset()
			a.Log(context.Background(), &tc.e)
			if got := buf.Len() > 0; got != tc.want {
				t.Fatalf("logged = %v, want %v (%s)", got, tc.want, buf.String())
			}
		})
	}
}

// BenchmarkObserveRequest measures the per-request cost of the metrics
// with the label children cached.
func BenchmarkObserveRequest(b *testing.B) {
	m, err := New(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	o := &RequestObservation{Labels: sampleLabels(), Duration: time.Millisecond, RequestBytes: 100, ResponseBytes: 1000}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.ObserveRequest(o)
		}
	})
}

// BenchmarkObserveRequestUncached is the same without the cache: what
// WithLabelValues on four vectors costs per request.
func BenchmarkObserveRequestUncached(b *testing.B) {
	m, err := New(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	l := sampleLabels()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			vals := l.values()
			m.requests.WithLabelValues(vals...).Inc()
			m.duration.WithLabelValues(vals...).Observe(1)
			m.reqBytes.WithLabelValues(vals...).Observe(100)
			m.respBytes.WithLabelValues(vals...).Observe(1000)
		}
	})
}
