package otlp_test

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/zmesh/zmesh/internal/tracing"
	"github.com/zmesh/zmesh/internal/tracing/otlp"
	"github.com/zmesh/zmesh/internal/tracing/otlptest"
)

// run runs e until the test ends.
func run(t *testing.T, e *otlp.Exporter) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { e.Run(ctx) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
}

func TestExportParentAndChild(t *testing.T) {
	col := otlptest.Start(t)
	e, err := otlp.New(otlp.Config{Service: "web.foo", Interval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	run(t, e)
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	client := e.Start(tracing.SpanContext{}, otlp.Client, "api.foo.svc.cluster.local:8080/*", col.Addr, start)
	traceID, clientID := client.IDs()
	server := e.Start(tracing.SpanContext{TraceID: traceID, SpanID: clientID, Decision: tracing.Sampled}, otlp.Server, "inbound", col.Addr, start.Add(time.Millisecond))
	if tid, _ := server.IDs(); tid != traceID {
		t.Fatalf("server span in trace %s, want %s", tid, traceID)
	}
	server.End(&otlp.Request{Method: "GET", URL: "http://api/x", Status: 200, PeerIdentity: "spiffe://cluster.local/ns/foo/sa/web"}, start.Add(2*time.Millisecond))
	client.End(&otlp.Request{Method: "GET", URL: "http://api/x", Status: 503, UpstreamCluster: "outbound|8080||api.foo.svc.cluster.local"}, start.Add(3*time.Millisecond))

	spans := col.Wait(2, 10*time.Second)
	if len(spans) != 2 {
		t.Fatalf("collector received %d spans, want 2", len(spans))
	}
	byKind := map[tracepb.Span_SpanKind]otlptest.Span{}
	for _, s := range spans {
		byKind[s.Kind] = s
	}
	c, s := byKind[tracepb.Span_SPAN_KIND_CLIENT], byKind[tracepb.Span_SPAN_KIND_SERVER]
	if c.TraceID != traceID.String() || s.TraceID != traceID.String() {
		t.Errorf("trace IDs %s, %s, want %s", c.TraceID, s.TraceID, traceID)
	}
	if s.ParentSpanID != c.SpanID || c.ParentSpanID != "" {
		t.Errorf("server parent %q, client span %q (client parent %q)", s.ParentSpanID, c.SpanID, c.ParentSpanID)
	}
	if c.Service != "web.foo" || c.Attributes["zmesh.proxy"] != "client" || s.Attributes["zmesh.proxy"] != "server" {
		t.Errorf("service %q, attributes %v / %v", c.Service, c.Attributes, s.Attributes)
	}
	if c.Attributes["http.status_code"] != "503" || c.Attributes["error"] != "true" || c.Attributes["upstream_cluster"] != "outbound|8080||api.foo.svc.cluster.local" {
		t.Errorf("client attributes %v", c.Attributes)
	}
	if s.Attributes["zmesh.peer.identity"] != "spiffe://cluster.local/ns/foo/sa/web" || s.Attributes["error"] != "" {
		t.Errorf("server attributes %v", s.Attributes)
	}
	if !c.Start.Equal(start) || !c.End.Equal(start.Add(3*time.Millisecond)) {
		t.Errorf("client span %v to %v", c.Start, c.End)
	}
}

// TestQueueFullDrops shows that End never waits: with no Run taking
// spans, the queue fills and the rest are dropped and counted.
func TestQueueFullDrops(t *testing.T) {
	reg := prometheus.NewRegistry()
	e, err := otlp.New(otlp.Config{Service: "web.foo", QueueSize: 2, Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		e.Start(tracing.SpanContext{}, otlp.Client, "x", "127.0.0.1:1", time.Now()).End(&otlp.Request{Status: 200}, time.Now())
	}
	if n := testutil.ToFloat64(dropped(t, reg, "queue_full")); n != 3 {
		t.Errorf("dropped %v spans, want 3", n)
	}
}

// TestCollectorDownCountsFailures: spans for a collector that is not there
// are dropped after the export time-out, counted, and Run still stops
// promptly.
func TestCollectorDownCountsFailures(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	reg := prometheus.NewRegistry()
	e, err := otlp.New(otlp.Config{Service: "web.foo", Interval: 10 * time.Millisecond, Timeout: 200 * time.Millisecond, Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.Run(ctx)
	}()
	e.Start(tracing.SpanContext{}, otlp.Client, "x", addr, time.Now()).End(&otlp.Request{Status: 200}, time.Now())
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(dropped(t, reg, "export_failed")) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the failed export was not counted")
		}
		time.Sleep(10 * time.Millisecond) // polling a counter: no event to wait on
	}
	stopped := time.Now()
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
	if d := time.Since(stopped); d > 2*time.Second {
		t.Errorf("Run took %v to stop", d)
	}
}

func dropped(t *testing.T, reg *prometheus.Registry, reason string) prometheus.Collector {
	t.Helper()
	return collectorFunc(func() float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != "zmesh_tracing_spans_dropped_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "reason" && l.GetValue() == reason {
						return m.GetCounter().GetValue()
					}
				}
			}
		}
		return 0
	})
}

// collectorFunc is a gauge computed on demand, for testutil.ToFloat64.
func collectorFunc(f func() float64) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "probe", Help: "probe"}, f)
}
