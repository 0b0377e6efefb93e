package ui

import (
	"bytes"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/zmesh/zmesh/internal/telemetry"
)

// proxyMetrics returns what a proxy's /metrics serves after the given
// observations, through the proxy's own telemetry package and promhttp.
func proxyMetrics(t *testing.T, record func(*telemetry.Metrics)) []byte {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := telemetry.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	record(m)
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "zmesh_cert_expiry_timestamp_seconds"}, func() float64 { return 1.8e9 }))
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.Bytes()
}

func TestParseMetricsOfAProxy(t *testing.T) {
	frontend := telemetry.Peer{Workload: "frontend", Namespace: "web", Principal: "spiffe://cluster.local/ns/web/sa/frontend"}
	stranger := telemetry.Peer{Workload: "stranger", Namespace: "web", Principal: "spiffe://cluster.local/ns/web/sa/stranger"}
	backend := telemetry.Peer{Workload: "backend", Namespace: "api", Principal: "spiffe://cluster.local/ns/api/sa/backend"}
	body := proxyMetrics(t, func(m *telemetry.Metrics) {
		for range 3 {
			m.ObserveRequest(&telemetry.RequestObservation{Labels: telemetry.RequestLabels{Reporter: "destination", Source: frontend, Destination: backend,
				Service: "backend.api.svc.cluster.local", Protocol: "http", Code: 200, Security: "mutual_tls"}, Duration: time.Millisecond})
		}
		m.ObserveRequest(&telemetry.RequestObservation{Labels: telemetry.RequestLabels{Reporter: "destination", Source: stranger, Destination: backend,
			Service: "backend.api.svc.cluster.local", Protocol: "http", Code: 403, Flags: "RBAC", Security: "mutual_tls"}})
		m.Denied("")
		m.TCPOpened(telemetry.TCPLabels{Reporter: "destination", Source: frontend, Destination: backend, Security: "mutual_tls"}).Closed(1, 2)
	})
	s, err := ParseMetrics(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, se := range s.Series {
		got[se.SourceWorkload+" "+se.Protocol+" "+se.Code+" "+se.Flags+" "+se.Security] = se.Value
	}
	want := map[string]float64{"frontend http 200 - mutual_tls": 3, "stranger http 403 RBAC mutual_tls": 1, "frontend tcp   mutual_tls": 1}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("series %q = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("series = %v, want %v", got, want)
	}
	if s.Denied[""] != 1 || s.CertExpiry != 1.8e9 {
		t.Errorf("denied %v, cert expiry %v", s.Denied, s.CertExpiry)
	}
}

func TestParseMetricsRejectsAndBounds(t *testing.T) {
	if _, err := ParseMetrics(strings.NewReader("istio_requests_total{reporter=\"destination\" 1\n")); err == nil {
		t.Error("malformed exposition accepted")
	}
	var b strings.Builder
	for i := range MaxSeries + 100 {
		b.WriteString("istio_requests_total{reporter=\"destination\",response_code=\"")
		b.WriteString(strings.Repeat("1", 1+i%5))
		b.WriteString("\",source_workload=\"w")
		b.WriteString(strings.Repeat("x", i%7))
		b.WriteString(string(rune('a' + i%26)))
		b.WriteString("\",source_principal=\"p")
		b.WriteString(strings.Repeat("y", i))
		b.WriteString("\"} 1\n")
	}
	b.WriteString("istio_requests_total{reporter=\"x\"} -5\nistio_requests_total{reporter=\"y\"} NaN\n")
	s, err := ParseMetrics(strings.NewReader(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Series) != MaxSeries {
		t.Errorf("%d series kept, want the bound %d", len(s.Series), MaxSeries)
	}
	for _, se := range s.Series {
		if se.Value != 1 {
			t.Fatalf("a negative or NaN counter was kept: %+v", se)
		}
	}
}

func FuzzParseMetrics(f *testing.F) {
	f.Add([]byte("istio_requests_total{reporter=\"destination\",response_code=\"403\",response_flags=\"RBAC\"} 3\n"))
	f.Add([]byte("# TYPE zmesh_authz_denied_total counter\nzmesh_authz_denied_total{policy=\"\"} 1\nzmesh_cert_expiry_timestamp_seconds 1.7e9\n"))
	f.Add([]byte("istio_tcp_connections_opened_total{source_workload=\"a\\\"b\"} +Inf\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseMetrics(bytes.NewReader(data))
		if err != nil {
			return
		}
		if len(s.Series) > MaxSeries || len(s.Denied) > MaxSeries {
			t.Fatalf("bound exceeded: %d series", len(s.Series))
		}
		for _, se := range s.Series {
			if !counter(se.Value) {
				t.Fatalf("non-counter value kept: %v", se.Value)
			}
		}
		// Whatever a proxy sends, the model builds and renders.
		now := time.Unix(1000, 0)
		m := Build(Inputs{Now: now, Workloads: testWorkloads, Mesh: testMesh, Scrapes: map[string]Scrape{"api/backend": {At: now, Sample: s}}})
		Render(m)
	})
}
