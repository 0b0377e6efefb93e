package e2e

import (
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/zmesh/zmesh/internal/tracing/otlptest"
)

// TestTraceReachesCollector: with the mesh config naming an OpenTelemetry
// collector (an OTLP server in the test) and a mesh-wide Telemetry
// sampling every request, one request from frontend to backend through
// the real proxies yields two spans, the client proxy's and the server
// proxy's, in one trace, the server's child of the client's, both with the
// x-request-id the backend app received.
func TestTraceReachesCollector(t *testing.T) {
	col := otlptest.Start(t)
	host, port, _ := net.SplitHostPort(col.Addr)
	meshConfig := t.TempDir() + "/mesh.yaml"
	writeFile(t, meshConfig, "extensionProviders:\n- name: otel\n  opentelemetry: {service: "+host+", port: "+port+"}\n")
	m := startMeshWith(t, map[string]string{"telemetry.yaml": `
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  tracing:
  - providers: [{name: otel}]
    randomSamplingPercentage: 100
`}, "--mesh-config", meshConfig)
	defer func() {
		if t.Failed() {
			t.Logf("mesh logs:\n%s", m.Logs())
		}
	}()

	r, err := viaOutbound(m.w("web/frontend").outbound, backendHost, "/traced", nil)
	if err != nil || r.status != 200 {
		t.Fatalf("frontend -> backend: %d %v %s", r.status, err, r.body)
	}
	var echo echoReply
	if err := json.Unmarshal([]byte(r.body), &echo); err != nil {
		t.Fatalf("backend's answer %q: %v", r.body, err)
	}
	rid := strings.Join(echo.Headers["X-Request-Id"], ",")
	tp := strings.Split(strings.Join(echo.Headers["Traceparent"], ","), "-")
	if rid == "" || len(tp) != 4 {
		t.Fatalf("backend got x-request-id %q, traceparent %v", rid, tp)
	}

	spans := col.Wait(2, 20*time.Second)
	if len(spans) != 2 {
		t.Fatalf("collector received %d spans, want 2: %+v", len(spans), spans)
	}
	var client, server otlptest.Span
	for _, s := range spans {
		if s.Kind == tracepb.Span_SPAN_KIND_CLIENT {
			client = s
		} else {
			server = s
		}
	}
	if client.TraceID != tp[1] || server.TraceID != tp[1] || server.ParentSpanID != client.SpanID || server.SpanID != tp[2] {
		t.Errorf("client %+v\nserver %+v\nbackend's traceparent %v", client, server, tp)
	}
	if client.Attributes["guid:x-request-id"] != rid || server.Attributes["guid:x-request-id"] != rid {
		t.Errorf("request IDs in spans %q, %q; backend got %q", client.Attributes["guid:x-request-id"], server.Attributes["guid:x-request-id"], rid)
	}
	if client.Service != "frontend.web" || server.Service != "backend.api" ||
		!strings.HasSuffix(server.Attributes["zmesh.peer.identity"], "/ns/web/sa/frontend") {
		t.Errorf("services %q %q, server's peer %q", client.Service, server.Service, server.Attributes["zmesh.peer.identity"])
	}
}
