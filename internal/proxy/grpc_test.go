package proxy

import (
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/zmesh/zmesh/internal/meshtest"
	"github.com/zmesh/zmesh/internal/registry"
	"github.com/zmesh/zmesh/internal/xds"
)

// grpcApp serves gRPC's health service on loopback (cleartext HTTP/2, as
// a gRPC server in a pod does): "ok" is SERVING, anything else unknown.
func grpcApp(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("ok", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	return lis.Addr().String()
}

// TestGRPCThroughTheMesh: a gRPC client app calls a gRPC server app by
// service name through the client proxy's outbound listener (cleartext
// HTTP/2 with prior knowledge, as captured traffic arrives), mutual TLS,
// and the server proxy. Status codes and messages cross both proxies
// (trailers), authorization applies, and the metrics say grpc.
func TestGRPCThroughTheMesh(t *testing.T) {
	ca := meshtest.NewCA(t, testTD)
	server := startProxyAt(t, ca, "api", "backend", grpcApp(t), testLogger(t))
	client := startProxy(t, ca, "web", "frontend", echoApp(t))
	stranger := startProxy(t, ca, "web", "stranger", echoApp(t))
	mustApply(t, server, policyView(t, "s1", mesh(), strictMesh+"---\n"+allowFrontend))
	for _, c := range []*testProxy{client, stranger} {
		mustApply(t, c, &xds.View{Version: "c1", Mesh: mesh(), Services: []registry.Service{serviceOf(server)}})
	}
	call := func(from *testProxy, service string) (*healthpb.HealthCheckResponse, error) {
		t.Helper()
		conn, err := grpc.NewClient("passthrough:///backend.api.svc.cluster.local",
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "tcp", from.OutboundAddr().String())
			}))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	}

	resp, err := call(client, "ok")
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("frontend → backend Check(ok): %v %v", resp, err)
	}
	// An error status and its message come back from the app (trailers).
	if _, err := call(client, "nope"); status.Code(err) != codes.NotFound {
		t.Errorf("Check(nope): %v, want NotFound from the app", err)
	}
	// The stranger is denied by the server proxy's policy, with a gRPC
	// answer as Envoy gives: PERMISSION_DENIED and Envoy's words.
	_, err = call(stranger, "ok")
	if st, _ := status.FromError(err); st.Code() != codes.PermissionDenied || st.Message() != "RBAC: access denied" {
		t.Errorf("stranger → backend: %v, want PermissionDenied \"RBAC: access denied\"", err)
	}
	// Metrics: gRPC requests are answered HTTP 200, and the gRPC status
	// is in grpc_response_status, as Istio reports them.
	m := scrape(t, server)
	for _, want := range [][]string{
		{`source_workload="frontend"`, `response_code="200"`, `grpc_response_status="0"`, `response_flags="-"`},
		{`source_workload="frontend"`, `response_code="200"`, `grpc_response_status="5"`},
		{`source_workload="stranger"`, `response_code="200"`, `grpc_response_status="7"`, `response_flags="RBAC"`},
	} {
		if !hasMetric(m, "istio_requests_total{", append(want, `request_protocol="grpc"`)...) {
			t.Errorf("no istio_requests_total with %v in the server proxy's metrics", want)
		}
	}
	if !hasMetric(scrape(t, client), "istio_requests_total{", `reporter="source"`, `grpc_response_status="5"`) {
		t.Error("the client proxy does not report grpc_response_status")
	}
}

// TestGRPCToHostsWithoutProxy: gRPC from an app to a server without a
// proxy (a plaintext endpoint of a mesh service, or a host outside the
// mesh under ALLOW_ANY) goes out as cleartext HTTP/2, as the app sent it.
func TestGRPCToHostsWithoutProxy(t *testing.T) {
	ca := meshtest.NewCA(t, testTD)
	app := grpcApp(t)
	client := startProxy(t, ca, "web", "frontend", echoApp(t))
	mustApply(t, client, &xds.View{Version: "c1", Mesh: mesh(), Services: []registry.Service{{
		Hostname: "legacy.web.svc.cluster.local", Namespace: "web",
		Endpoints: []registry.Endpoint{{Address: app}},
	}}})
	for _, authority := range []string{"legacy.web.svc.cluster.local", app} {
		conn, err := grpc.NewClient("passthrough:///"+authority,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "tcp", client.OutboundAddr().String())
			}))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "ok"})
		cancel()
		conn.Close()
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("%s: %v %v", authority, resp, err)
		}
	}
}

// TestGRPCLocalReplies: the proxy's own answers to a gRPC request are gRPC
// (trailers-only, HTTP 200), with Envoy's mapping of its HTTP status;
// other requests get them as plain HTTP, with an empty
// grpc_response_status.
func TestGRPCLocalReplies(t *testing.T) {
	p := newPair(t, strictMesh+"---\n"+denyAll)
	for _, tt := range []struct {
		contentType string
		wantCode    int
		wantGRPC    string
	}{
		{"application/grpc", 200, "7"},
		{"application/grpc+proto", 200, "7"},
		{"text/plain", 403, ""},
	} {
		req, _ := http.NewRequest("POST", "http://backend.api.svc.cluster.local/pkg.Svc/Method", strings.NewReader("x"))
		req.Header.Set("Content-Type", tt.contentType)
		resp, err := p.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.wantCode || resp.Header.Get("Grpc-Status") != tt.wantGRPC {
			t.Errorf("%s: %d grpc-status %q %q, want %d grpc-status %q", tt.contentType, resp.StatusCode, resp.Header.Get("Grpc-Status"), body, tt.wantCode, tt.wantGRPC)
		}
		if tt.wantGRPC != "" && (len(body) != 0 || resp.Header.Get("Grpc-Message") != "RBAC: access denied") {
			t.Errorf("%s: body %q grpc-message %q, want none and Envoy's words", tt.contentType, body, resp.Header.Get("Grpc-Message"))
		}
	}
	if !hasMetric(scrape(t, p.server), "istio_requests_total{", `request_protocol="http"`, `response_code="403"`, `grpc_response_status=""`) {
		t.Error("a plain HTTP denial is not reported with an empty grpc_response_status")
	}
	for code, want := range map[int]string{400: "13", 401: "16", 403: "7", 404: "12", 429: "14", 502: "14", 503: "14", 504: "14", 500: "2"} {
		if got := strconv.Itoa(int(grpcStatusFor(code))); got != want {
			t.Errorf("grpcStatusFor(%d) = %s, want %s", code, got, want)
		}
	}
	if got := grpcMessageEscape("50% off\nnow é"); got != "50%25 off%0Anow %C3%A9" {
		t.Errorf("grpcMessageEscape = %q", got)
	}
}

// hasMetric reports whether a line of metrics starts with prefix and
// contains every one of parts.
func hasMetric(metrics, prefix string, parts ...string) bool {
	for l := range strings.Lines(metrics) {
		if !strings.HasPrefix(l, prefix) {
			continue
		}
		all := true
		for _, p := range parts {
			all = all && strings.Contains(l, p)
		}
		if all {
			return true
		}
	}
	return false
}

// denyAll is an ALLOW policy on backend that matches nothing.
const denyAll = `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-all, namespace: api}
spec:
  selector: {matchLabels: {app: backend}}
  action: ALLOW
  rules:
  - from:
    - source: {principals: ["cluster.local/ns/nobody/sa/nobody"]}
`

// TestPlaintextGRPCToPermissiveInbound: a gRPC client without a proxy
// (cleartext HTTP/2 with prior knowledge) reaches a PERMISSIVE workload
// through its inbound listener; a STRICT one refuses it.
func TestPlaintextGRPCToPermissiveInbound(t *testing.T) {
	ca := meshtest.NewCA(t, testTD)
	server := startProxyAt(t, ca, "api", "backend", grpcApp(t), testLogger(t))
	check := func() error {
		conn, err := grpc.NewClient("passthrough:///"+server.InboundAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "ok"})
		if err == nil && resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("status %v", resp.GetStatus())
		}
		return err
	}
	mustApply(t, server, policyView(t, "permissive", mesh(), permissiveMesh))
	if err := check(); err != nil {
		t.Errorf("PERMISSIVE: %v", err)
	}
	if !hasMetric(scrape(t, server), "istio_requests_total{", `request_protocol="grpc"`, `connection_security_policy="none"`, `grpc_response_status="0"`) {
		t.Error("no plaintext grpc request in the metrics")
	}
	mustApply(t, server, policyView(t, "strict", mesh(), strictMesh))
	if err := check(); status.Code(err) != codes.Unavailable {
		t.Errorf("STRICT: %v, want the connection refused (Unavailable)", err)
	}
}

// TestGRPCNoEndpoints: the client proxy's own answer to a gRPC call for a
// service with no endpoints is UNAVAILABLE "no healthy upstream", as
// Envoy's, and its metrics say so.
func TestGRPCNoEndpoints(t *testing.T) {
	ca := meshtest.NewCA(t, testTD)
	client := startProxy(t, ca, "web", "frontend", echoApp(t))
	mustApply(t, client, &xds.View{Version: "c1", Mesh: mesh(), Services: []registry.Service{{Hostname: "empty.api.svc.cluster.local", Namespace: "api"}}})
	conn, err := grpc.NewClient("passthrough:///empty.api.svc.cluster.local",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", client.OutboundAddr().String())
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "ok"})
	if st, _ := status.FromError(err); st.Code() != codes.Unavailable || st.Message() != "no healthy upstream" {
		t.Errorf("Check: %v, want Unavailable \"no healthy upstream\"", err)
	}
	if !hasMetric(scrape(t, client), "istio_requests_total{", `request_protocol="grpc"`, `response_code="200"`, `grpc_response_status="14"`, `response_flags="UH"`) {
		t.Error("no grpc UNAVAILABLE/UH request in the client proxy's metrics")
	}
}
