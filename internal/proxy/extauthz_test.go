package proxy

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"

	"github.com/zmesh/zmesh/internal/extauthz/extauthztest"
	"github.com/zmesh/zmesh/internal/registry"
	"github.com/zmesh/zmesh/internal/xds"
)

// registryService is a mesh service with one plaintext endpoint.
func registryService(host, ns, addr string) registry.Service {
	return registry.Service{Hostname: host, Namespace: ns, Endpoints: []registry.Endpoint{{Address: addr, Workload: ns + "/x"}}}
}

// fakeAuthorizer is an in-process ext_authz server implementing Envoy's
// real Authorization API. It decides on the request's x-ext-authz header:
// "allow" allows (adding a header upstream and removing x-remove-me),
// "teapot" denies with 418 and a body, anything else denies plainly, and
// "slow" answers after a second. A TCP connection (no HTTP request) is
// allowed for web/frontend only.
type fakeAuthorizer struct {
	authv3.UnimplementedAuthorizationServer
	addr string
	mu   sync.Mutex
	seen []*authv3.CheckRequest
}

func startAuthorizer(t *testing.T) *fakeAuthorizer {
	t.Helper()
	fa := &fakeAuthorizer{}
	fa.addr = extauthztest.ServeGRPC(t, fa)
	return fa
}

func (f *fakeAuthorizer) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	f.mu.Lock()
	f.seen = append(f.seen, req)
	f.mu.Unlock()
	if req.GetAttributes().GetRequest().GetHttp() == nil {
		// A TCP connection (network ext_authz): only the peers to go
		// by. Frontend may connect.
		if strings.HasSuffix(req.GetAttributes().GetSource().GetPrincipal(), "/sa/frontend") {
			return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.OK)}}, nil
		}
		return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.PermissionDenied)}}, nil
	}
	h := req.GetAttributes().GetRequest().GetHttp().GetHeaders()
	switch h["x-ext-authz"] {
	case "allow":
		return &authv3.CheckResponse{
			Status: &rpcstatus.Status{Code: int32(codes.OK)},
			HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
				Headers:              []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-ext-authz-check-result", Value: "allowed"}}},
				HeadersToRemove:      []string{"x-remove-me"},
				ResponseHeadersToAdd: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-ext-authz-session", Value: "s1"}}},
			}},
		}, nil
	case "teapot":
		return &authv3.CheckResponse{
			Status: &rpcstatus.Status{Code: int32(codes.PermissionDenied)},
			HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
				Status:  &typev3.HttpStatus{Code: typev3.StatusCode(418)},
				Body:    "denied by ext_authz for not being a teapot",
				Headers: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-ext-authz-check-result", Value: "denied"}}},
			}},
		}, nil
	case "slow":
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.OK)}}, nil
	}
	return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.PermissionDenied)}}, nil
}

func (f *fakeAuthorizer) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.seen)
}

func (f *fakeAuthorizer) last() *authv3.CheckRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.seen) == 0 {
		return nil
	}
	return f.seen[len(f.seen)-1]
}

func grpcProvider(name, service string, port uint32, failOpen bool, timeout time.Duration) *meshv1alpha1.MeshConfig_ExtensionProvider {
	g := &meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationGrpcProvider{Service: service, Port: port, FailOpen: failOpen}
	if timeout > 0 {
		g.Timeout = durationpb.New(timeout)
	}
	return &meshv1alpha1.MeshConfig_ExtensionProvider{
		Name:     name,
		Provider: &meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyExtAuthzGrpc{EnvoyExtAuthzGrpc: g},
	}
}

func customPolicy(provider string) string {
	return fmt.Sprintf(`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext, namespace: api}
spec:
  action: CUSTOM
  provider: {name: %s}
  rules:
  - to:
    - operation: {paths: ["/ext/*"]}
`, provider)
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string { return extauthztest.ClosedAddr(t) }

func TestCustomExtAuthz(t *testing.T) {
	fa := startAuthorizer(t)
	host, port, _ := net.SplitHostPort(fa.addr)
	var portN uint32
	fmt.Sscan(port, &portN)
	m := mesh()
	m.ExtensionProviders = []*meshv1alpha1.MeshConfig_ExtensionProvider{
		grpcProvider("ext", host, portN, false, 300*time.Millisecond),
		grpcProvider("dead", closedAddr(t), 0, false, 0),
		grpcProvider("dead-open", closedAddr(t), 0, true, 0),
	}
	p := newPairWith(t, m, permissiveMesh+"---\n"+customPolicy("ext"), headerApp(t))
	url := "http://backend.api.svc.cluster.local"

	t.Run("allowed by the provider, with its header changes", func(t *testing.T) {
		code, h, body := doGet(t, p.http, url+"/ext/a?q=1", map[string]string{"X-Ext-Authz": "allow", "X-Remove-Me": "1"})
		if code != 200 || !strings.Contains(body, "X-Ext-Authz-Check-Result: allowed\n") || strings.Contains(body, "X-Remove-Me") {
			t.Fatalf("got %d %q", code, body)
		}
		// OkHttpResponse.response_headers_to_add reach the client with
		// the app's response, and not the app.
		if h.Get("X-Ext-Authz-Session") != "s1" || strings.Contains(body, "Session") {
			t.Errorf("response header X-Ext-Authz-Session = %q; app saw: %q", h.Get("X-Ext-Authz-Session"), body)
		}
		req := fa.last()
		attrs := req.GetAttributes()
		if got := attrs.GetSource().GetPrincipal(); got != "spiffe://cluster.local/ns/web/sa/frontend" {
			t.Errorf("source principal %q", got)
		}
		if got := attrs.GetDestination().GetPrincipal(); got != "spiffe://cluster.local/ns/api/sa/backend" {
			t.Errorf("destination principal %q", got)
		}
		if h := attrs.GetRequest().GetHttp(); h.GetPath() != "/ext/a?q=1" || h.GetMethod() != "GET" || h.GetHeaders()[":path"] != "/ext/a?q=1" {
			t.Errorf("http attributes %v", h)
		}
	})
	t.Run("denied by the provider: its status, body and headers", func(t *testing.T) {
		code, h, body := doGet(t, p.http, url+"/ext/a", map[string]string{"X-Ext-Authz": "teapot"})
		if code != 418 || body != "denied by ext_authz for not being a teapot" || h.Get("X-Ext-Authz-Check-Result") != "denied" {
			t.Fatalf("got %d %q %v", code, body, h)
		}
	})
	t.Run("denied without a response: 403", func(t *testing.T) {
		if code, _, body := doGet(t, p.http, url+"/ext/a", nil); code != 403 {
			t.Fatalf("got %d %q", code, body)
		}
	})
	t.Run("paths the CUSTOM policy does not match skip the provider", func(t *testing.T) {
		n := len(fa.seen)
		if code, _, body := doGet(t, p.http, url+"/other", nil); code != 200 {
			t.Fatalf("got %d %q", code, body)
		}
		if len(fa.seen) != n {
			t.Error("provider consulted for a request no CUSTOM policy matches")
		}
	})
	t.Run("a provider slower than its timeout denies", func(t *testing.T) {
		start := time.Now()
		if code, _, body := doGet(t, p.http, url+"/ext/a", map[string]string{"X-Ext-Authz": "slow"}); code != 403 {
			t.Fatalf("got %d %q", code, body)
		}
		if d := time.Since(start); d > 900*time.Millisecond {
			t.Errorf("took %s, the timeout is 300ms", d)
		}
	})

	for _, tc := range []struct {
		provider string
		want     int
	}{
		{"dead", 403},      // unreachable: fail closed
		{"dead-open", 200}, // unreachable, failOpen: allowed
		{"nonexistent", 403},
	} {
		t.Run("unreachable provider "+tc.provider, func(t *testing.T) {
			v := &xds.View{Version: "s-" + tc.provider, Mesh: m, PeerAuthentications: parse(t, permissiveMesh), AuthorizationPolicies: parse(t, customPolicy(tc.provider))}
			mustApply(t, p.server, v)
			if code, _, body := doGet(t, p.http, url+"/ext/a", map[string]string{"X-Ext-Authz": "allow"}); code != tc.want {
				t.Fatalf("got %d %q, want %d", code, body, tc.want)
			}
		})
	}
}

// TestCustomExtAuthzViaMeshService: a provider named by a mesh hostname is
// reached through the route table (here a plaintext endpoint).
// TestCustomExtAuthzViaMeshService: a provider named by a mesh hostname,
// alone or in Istio's NAMESPACE/HOSTNAME form, is reached at the service's
// endpoint; a namespace that disagrees with the service's fails closed.
func TestCustomExtAuthzViaMeshService(t *testing.T) {
	for _, tc := range []struct {
		service string
		want    int
	}{
		{"ext-authz.authz.svc.cluster.local", 200},
		{"authz/ext-authz.authz.svc.cluster.local", 200},
		{"other/ext-authz.authz.svc.cluster.local", 403},
		{"authz/missing.authz.svc.cluster.local", 403},
	} {
		t.Run(tc.service, func(t *testing.T) {
			fa := startAuthorizer(t)
			m := mesh()
			m.ExtensionProviders = []*meshv1alpha1.MeshConfig_ExtensionProvider{grpcProvider("ext", tc.service, 9000, false, 0)}
			p := newPairWith(t, m, customPolicy("ext"), headerApp(t))
			v := p.server.state.Load().view
			nv := *v
			nv.Version = "s2"
			nv.Services = append(nv.Services, registryService("ext-authz.authz.svc.cluster.local", "authz", fa.addr))
			mustApply(t, p.server, &nv)
			if code, _, body := doGet(t, p.http, "http://backend.api.svc.cluster.local/ext/x", map[string]string{"X-Ext-Authz": "allow"}); code != tc.want {
				t.Fatalf("got %d %q, want %d", code, body, tc.want)
			}
			if asked := fa.last() != nil; asked != (tc.want == 200) {
				t.Errorf("provider asked = %v", asked)
			}
		})
	}
}

// TestCustomExtAuthzThroughSidecar: a provider whose workload has a proxy
// is called over mutual TLS with secure naming, and its proxy passes the
// gRPC call on to it.
func TestCustomExtAuthzThroughSidecar(t *testing.T) {
	fa := startAuthorizer(t)
	m := mesh()
	m.ExtensionProviders = []*meshv1alpha1.MeshConfig_ExtensionProvider{grpcProvider("ext", "ext-authz.authz.svc.cluster.local", 9000, false, 0)}
	p := newPairWith(t, m, customPolicy("ext"), headerApp(t))
	authzProxy := startProxyAt(t, p.ca, "authz", "ext-authz", fa.addr, testLogger(t))
	mustApply(t, authzProxy, &xds.View{Version: "a1", Mesh: mesh(), PeerAuthentications: parse(t, strictMesh)})
	nv := *p.server.state.Load().view
	nv.Version = "s2"
	nv.Services = append(nv.Services, serviceOf(authzProxy))
	mustApply(t, p.server, &nv)
	if code, _, body := doGet(t, p.http, "http://backend.api.svc.cluster.local/ext/x", map[string]string{"X-Ext-Authz": "allow"}); code != 200 {
		t.Fatalf("got %d %q", code, body)
	}
	if code, _, body := doGet(t, p.http, "http://backend.api.svc.cluster.local/ext/x", nil); code != 403 {
		t.Fatalf("got %d %q", code, body)
	}
	// The call reached the authorizer through its proxy, as the backend.
	if got := fa.last().GetAttributes().GetSource().GetPrincipal(); got != "spiffe://cluster.local/ns/web/sa/frontend" {
		t.Errorf("source principal %q", got)
	}
	if got := counter(t, authzProxy, "istio_requests_total", `source_principal="spiffe://cluster.local/ns/api/sa/backend"`); got != 2 {
		t.Errorf("the authorizer's proxy served %v calls from backend, want 2", got)
	}
}
