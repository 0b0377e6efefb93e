package proxy

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"

	"github.com/zmesh/zmesh/internal/meshtest"
	"github.com/zmesh/zmesh/internal/registry"
	"github.com/zmesh/zmesh/internal/tracing/otlp"
	"github.com/zmesh/zmesh/internal/tracing/otlptest"
	"github.com/zmesh/zmesh/internal/xds"
)

// headersApp answers with the request headers it received, as JSON.
func headersApp(t testing.TB) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(r.Header)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// tracedPair is a client and a server proxy whose mesh names an
// OpenTelemetry provider "otel" at col, with a mesh-wide Telemetry
// sampling percent% of requests (percent < 0: no Telemetry, no tracer).
func tracedPair(t testing.TB, col *otlptest.Collector, percent float64) *pair {
	t.Helper()
	host, port, _ := net.SplitHostPort(col.Addr)
	n, _ := strconv.Atoi(port)
	m := mesh()
	m.ExtensionProviders = []*meshv1alpha1.MeshConfig_ExtensionProvider{{Name: "otel", Provider: &meshv1alpha1.MeshConfig_ExtensionProvider_Opentelemetry{
		Opentelemetry: &meshv1alpha1.MeshConfig_ExtensionProvider_OpenTelemetryTracingProvider{Service: host, Port: uint32(n)},
	}}}
	ca := meshtest.NewCA(t, testTD)
	server := startProxy(t, ca, "api", "backend", headersApp(t))
	client := startProxy(t, ca, "web", "frontend", echoApp(t))
	sv := policyView(t, "s1", m, strictMesh)
	cv := &xds.View{Version: "c1", Mesh: m, Services: []registry.Service{serviceOf(server)}}
	if percent >= 0 {
		tel := parse(t, "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: mesh-default, namespace: istio-system}\n"+
			"spec:\n  tracing:\n  - providers: [{name: otel}]\n    randomSamplingPercentage: "+strconv.FormatFloat(percent, 'f', -1, 64)+"\n")
		sv.Telemetries, cv.Telemetries = tel, tel
	}
	mustApply(t, server, sv)
	mustApply(t, client, cv)
	return &pair{ca: ca, client: client, server: server, http: proxyClient(t, client)}
}

// call sends GET /path to backend through the client proxy with headers h
// and returns the headers the app received.
func (p *pair) call(t *testing.T, h map[string]string) http.Header {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://backend.api.svc.cluster.local/items?x=1", nil)
	for k, v := range h {
		req.Header.Set(k, v)
	}
	resp, err := p.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	var got http.Header
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	return got
}

var uuidV4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestTraceSpansFromBothProxies(t *testing.T) {
	col := otlptest.Start(t)
	p := tracedPair(t, col, 100)
	got := p.call(t, nil)

	rid := got.Get("X-Request-Id")
	if !uuidV4.MatchString(rid) {
		t.Errorf("app got x-request-id %q, want a generated UUID", rid)
	}
	tp := strings.Split(got.Get("Traceparent"), "-")
	if len(tp) != 4 || tp[3] != "01" {
		t.Fatalf("app got traceparent %q, want a sampled one", got.Get("Traceparent"))
	}
	spans := col.Wait(2, 10*time.Second)
	if len(spans) != 2 {
		t.Fatalf("collector received %d spans, want 2: %+v", len(spans), spans)
	}
	var client, server otlptest.Span
	for _, s := range spans {
		switch s.Kind {
		case tracepb.Span_SPAN_KIND_CLIENT:
			client = s
		case tracepb.Span_SPAN_KIND_SERVER:
			server = s
		}
	}
	if client.TraceID != tp[1] || server.TraceID != tp[1] {
		t.Errorf("trace IDs client %s server %s, app saw %s", client.TraceID, server.TraceID, tp[1])
	}
	if server.ParentSpanID != client.SpanID || client.ParentSpanID != "" {
		t.Errorf("server's parent %q, client span %q (its parent %q)", server.ParentSpanID, client.SpanID, client.ParentSpanID)
	}
	if server.SpanID != tp[2] {
		t.Errorf("app's parent span %s, want the server proxy's %s", tp[2], server.SpanID)
	}
	for _, s := range []otlptest.Span{client, server} {
		if s.Attributes["guid:x-request-id"] != rid || s.Attributes["http.method"] != "GET" || s.Attributes["http.status_code"] != "200" ||
			s.Name != "backend.api.svc.cluster.local:80/*" || s.Attributes["http.url"] != "http://backend.api.svc.cluster.local/items?x=1" {
			t.Errorf("%s span %q: %v", s.Attributes["zmesh.proxy"], s.Name, s.Attributes)
		}
	}
	if client.Attributes["zmesh.proxy"] != "client" || client.Attributes["zmesh.peer.identity"] != p.server.certs.uri ||
		client.Attributes["upstream_cluster"] != "outbound|80||backend.api.svc.cluster.local" || client.Service != "frontend.web" {
		t.Errorf("client span: service %q %v", client.Service, client.Attributes)
	}
	if server.Attributes["zmesh.proxy"] != "server" || server.Attributes["zmesh.peer.identity"] != p.client.certs.uri ||
		!strings.HasPrefix(server.Attributes["upstream_cluster"], "inbound|") || server.Service != "backend.api" {
		t.Errorf("server span: service %q %v", server.Service, server.Attributes)
	}
}

func TestTraceContinuesTheAppsTrace(t *testing.T) {
	col := otlptest.Start(t)
	p := tracedPair(t, col, 0) // the app's decision wins over the rate
	const trace, span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	got := p.call(t, map[string]string{"traceparent": "00-" + trace + "-" + span + "-01", "tracestate": "vendor=x", "x-request-id": "given-id"})
	if got.Get("X-Request-Id") != "given-id" {
		t.Errorf("x-request-id %q, want the app's", got.Get("X-Request-Id"))
	}
	if got.Get("Tracestate") != "vendor=x" {
		t.Errorf("tracestate %q not passed on", got.Get("Tracestate"))
	}
	spans := col.Wait(2, 10*time.Second)
	if len(spans) != 2 {
		t.Fatalf("%d spans, want 2", len(spans))
	}
	for _, s := range spans {
		if s.TraceID != trace || s.Attributes["guid:x-request-id"] != "given-id" {
			t.Errorf("span %+v", s)
		}
		if s.Kind == tracepb.Span_SPAN_KIND_CLIENT && s.ParentSpanID != span {
			t.Errorf("client span's parent %s, want the app's %s", s.ParentSpanID, span)
		}
	}
}

// TestTraceSamplingRate: at 0% no request is reported unless it comes
// sampled; at 100% every one is, unless it comes with sampled 00.
func TestTraceSamplingRate(t *testing.T) {
	const marker = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	t.Run("0%", func(t *testing.T) {
		col := otlptest.Start(t)
		p := tracedPair(t, col, 0)
		for range 20 {
			got := p.call(t, nil)
			if tp := got.Get("Traceparent"); !strings.HasSuffix(tp, "-00") {
				t.Fatalf("unsampled request carried traceparent %q, want flags 00", tp)
			}
		}
		// A sampled request after them: its spans are the only ones.
		p.call(t, map[string]string{"traceparent": marker})
		if spans := col.Wait(2, 10*time.Second); len(spans) != 2 || spans[0].TraceID != "0af7651916cd43dd8448eb211c80319c" || spans[1].TraceID != spans[0].TraceID {
			t.Errorf("spans %+v, want only the marker's two", spans)
		}
	})
	t.Run("100%", func(t *testing.T) {
		col := otlptest.Start(t)
		p := tracedPair(t, col, 100)
		p.call(t, map[string]string{"traceparent": "00-0af7651916cd43dd8448eb211c80319d-b7ad6b7169203331-00"})
		const n = 20
		for range n {
			p.call(t, nil)
		}
		spans := col.Wait(2*n, 10*time.Second)
		traces := map[string]int{}
		for _, s := range spans {
			traces[s.TraceID]++
		}
		if len(spans) != 2*n || len(traces) != n {
			t.Errorf("%d spans in %d traces, want %d in %d", len(spans), len(traces), 2*n, n)
		}
		if traces["0af7651916cd43dd8448eb211c80319d"] != 0 {
			t.Error("a request that came with sampled 00 was reported")
		}
	})
}

func TestTraceB3Propagated(t *testing.T) {
	col := otlptest.Start(t)
	p := tracedPair(t, col, 100)
	const trace, span = "463ac35c9f6413ad48485a3953bb6124", "a2fb4a1d1a96d312"
	got := p.call(t, map[string]string{"x-b3-traceid": trace, "x-b3-spanid": span, "x-b3-sampled": "1"})
	spans := col.Wait(2, 10*time.Second)
	var server otlptest.Span
	for _, s := range spans {
		if s.Kind == tracepb.Span_SPAN_KIND_SERVER {
			server = s
		}
	}
	if server.TraceID != trace || got.Get("X-B3-Traceid") != trace || got.Get("X-B3-Spanid") != server.SpanID ||
		got.Get("X-B3-Parentspanid") != server.ParentSpanID || got.Get("X-B3-Sampled") != "1" {
		t.Errorf("app got b3 %v %v %v %v; server span %+v", got.Get("X-B3-Traceid"), got.Get("X-B3-Spanid"), got.Get("X-B3-Parentspanid"), got.Get("X-B3-Sampled"), server)
	}
	if !strings.Contains(got.Get("Traceparent"), trace) {
		t.Errorf("traceparent %q does not continue the B3 trace", got.Get("Traceparent"))
	}

	got = p.call(t, map[string]string{"b3": trace + "-" + span + "-0"})
	if b3 := strings.Split(got.Get("B3"), "-"); len(b3) != 4 || b3[0] != trace || b3[2] != "0" {
		t.Errorf("app got b3 %q, want the trace continued, not sampled", got.Get("B3"))
	}
}

// TestTraceOffPassesHeadersThrough: without a tracer, trace headers are the
// app's business and cross untouched; the request ID is still generated.
func TestTraceOffPassesHeadersThrough(t *testing.T) {
	col := otlptest.Start(t)
	p := tracedPair(t, col, -1)
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	got := p.call(t, map[string]string{"traceparent": tp})
	if got.Get("Traceparent") != tp {
		t.Errorf("traceparent %q, want %q untouched", got.Get("Traceparent"), tp)
	}
	if !uuidV4.MatchString(got.Get("X-Request-Id")) {
		t.Errorf("x-request-id %q", got.Get("X-Request-Id"))
	}
	if spans := col.Spans(); len(spans) != 0 {
		t.Errorf("spans reported without a tracer: %+v", spans)
	}
}

// TestTraceOffAllocatesNothing: with no tracer configured, a request that
// carries its x-request-id costs the tracing code no allocation; one
// without costs the ID (its string and header slice), as with Envoy's
// generate_request_id, which is on whether or not a tracer is.
func TestTraceOffAllocatesNothing(t *testing.T) {
	ca := meshtest.NewCA(t, testTD)
	p := startProxy(t, ca, "web", "frontend", echoApp(t))
	mustApply(t, p, &xds.View{Version: "1", Mesh: mesh()})
	h := http.Header{"X-Request-Id": {"given"}, "Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}
	now := time.Now()
	if n := testing.AllocsPerRun(100, func() {
		if p.startTrace(h, otlp.Client, now) != nil {
			t.Fatal("a span without a tracer")
		}
	}); n != 0 {
		t.Errorf("%v allocations per request with tracing off", n)
	}
	if n := testing.AllocsPerRun(100, func() {
		delete(h, "X-Request-Id")
		p.startTrace(h, otlp.Server, now)
	}); n > 2 {
		t.Errorf("%v allocations to generate a request ID, want at most 2", n)
	}
}

// BenchmarkOutboundInboundTraced is BenchmarkOutboundInbound with every
// request traced and both proxies' spans exported to a collector: the
// cost of tracing at 100%.
func BenchmarkOutboundInboundTraced(b *testing.B) {
	col := otlptest.Start(b)
	p := tracedPair(b, col, 100)
	benchGet(b, benchClient(b), "http://"+p.client.OutboundAddr().String()+"/bench", "backend.api.svc.cluster.local")
}
