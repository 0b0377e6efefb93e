package proxy

import (
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/meshtest"
	"github.com/zmesh/zmesh/internal/registry"
	"github.com/zmesh/zmesh/internal/tracing/otlptest"
	"github.com/zmesh/zmesh/internal/xds"
)

// TestGatewayTrace: an ingress gateway emits its span like a sidecar's
// client span, continuing the caller's W3C trace, and propagates it: the
// backend's server span is its child, and the app sees the backend
// proxy's span as parent in the same trace.
func TestGatewayTrace(t *testing.T) {
	col := otlptest.Start(t)
	host, port, _ := net.SplitHostPort(col.Addr)
	n, _ := strconv.Atoi(port)
	m := mesh()
	m.ExtensionProviders = []*meshv1alpha1.MeshConfig_ExtensionProvider{{Name: "otel", Provider: &meshv1alpha1.MeshConfig_ExtensionProvider_Opentelemetry{
		Opentelemetry: &meshv1alpha1.MeshConfig_ExtensionProvider_OpenTelemetryTracingProvider{Service: host, Port: uint32(n)},
	}}}
	ca := meshtest.NewCA(t, testTD)
	backend := startProxy(t, ca, "api", "backend", headersApp(t))
	gw := startGateway(t, ca, "ingressgateway", "", testLogger(t), func(c *Config) { c.Gateway.Ports = map[uint32]string{8080: "127.0.0.1:0"} })
	res := parse(t, `apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  tracing:
  - providers: [{name: otel}]
    randomSamplingPercentage: 100
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: web, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: [web.example.com]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: istio-system}
spec:
  hosts: [web.example.com]
  gateways: [web]
  http:
  - route: [{destination: {host: backend.api.svc.cluster.local}}]
`)
	sv := policyView(t, "s1", m, strictMesh)
	for _, r := range res {
		if r.Kind == config.KindTelemetry {
			sv.Telemetries = append(sv.Telemetries, r)
		}
	}
	mustApply(t, backend, sv)
	snap := config.NewSnapshot("1", res)
	mustApply(t, gw, xds.Build(snap, []registry.Service{serviceOf(backend)}, m, xds.Proxy{ID: gw.reg.Key(), Workload: gw.reg, Gateway: true}))
	var addr net.Addr
	waitFor(t, func() bool { addr = gw.GatewayAddr(8080); return addr != nil })

	const trace, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	req, _ := http.NewRequest("GET", "http://"+addr.String()+"/shop?q=1", nil)
	req.Host = "web.example.com"
	req.Header.Set("traceparent", "00-"+trace+"-"+parent+"-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got http.Header
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != 200 {
		t.Fatalf("status %d, %v", resp.StatusCode, err)
	}
	spans := col.Wait(2, 10*time.Second)
	if len(spans) != 2 {
		t.Fatalf("collector received %d spans, want the gateway's and the backend's: %+v", len(spans), spans)
	}
	var gwSpan, server otlptest.Span
	for _, s := range spans {
		switch s.Kind {
		case tracepb.Span_SPAN_KIND_CLIENT:
			gwSpan = s
		case tracepb.Span_SPAN_KIND_SERVER:
			server = s
		}
	}
	if gwSpan.TraceID != trace || server.TraceID != trace {
		t.Errorf("trace IDs gateway %q backend %q, want the caller's %s", gwSpan.TraceID, server.TraceID, trace)
	}
	if gwSpan.ParentSpanID != parent || server.ParentSpanID != gwSpan.SpanID {
		t.Errorf("gateway span's parent %q (want the caller's), backend's parent %q (want the gateway's %q)", gwSpan.ParentSpanID, server.ParentSpanID, gwSpan.SpanID)
	}
	if gwSpan.Service != "istio-ingressgateway.istio-system" || gwSpan.Name != "backend.api.svc.cluster.local:8080/*" ||
		gwSpan.Attributes["upstream_cluster"] != "outbound|8080||backend.api.svc.cluster.local" || gwSpan.Attributes["http.status_code"] != "200" ||
		gwSpan.Attributes["zmesh.peer.identity"] != backend.certs.uri {
		t.Errorf("gateway span: service %q name %q %v", gwSpan.Service, gwSpan.Name, gwSpan.Attributes)
	}
	if tp := got.Get("Traceparent"); !strings.Contains(tp, trace+"-"+server.SpanID) {
		t.Errorf("the app saw traceparent %q, want the backend proxy's span %s of trace %s", tp, server.SpanID, trace)
	}
}
