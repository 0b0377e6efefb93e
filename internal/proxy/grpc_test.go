package proxy

import (
	"context"
	"net"
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
	// The stranger is denied by the server proxy's policy.
	if _, err := call(stranger, "ok"); status.Code(err) != codes.PermissionDenied {
		t.Errorf("stranger → backend: %v, want PermissionDenied (HTTP 403)", err)
	}
	m := scrape(t, server)
	for _, want := range []string{`response_code="200"`, `response_code="403"`} {
		found := false
		for l := range strings.Lines(m) {
			found = found || strings.HasPrefix(l, "istio_requests_total{") && strings.Contains(l, want) && strings.Contains(l, `request_protocol="grpc"`)
		}
		if !found {
			t.Errorf("no grpc request with %s in the server proxy's istio_requests_total", want)
		}
	}
}
