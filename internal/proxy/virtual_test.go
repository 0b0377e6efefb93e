package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/meshtest"
	"github.com/zmesh/zmesh/internal/registry"
)

// versionApp is an app that says which version it is and what it got.
// Paths under /flaky/ fail with 503 the first time each is asked; /slow
// waits until its caller goes away; a request whose Host ends in -shadow
// is counted and, while hold is set, held until hold is closed.
type versionApp struct {
	*httptest.Server
	version string
	seen    sync.Map // path -> *atomic.Int64
	shadows atomic.Int64
	hold    atomic.Pointer[chan struct{}]
	held    atomic.Int64
}

func newVersionApp(t *testing.T, version string) *versionApp {
	a := &versionApp{version: version}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		n, _ := a.seen.LoadOrStore(r.URL.Path, new(atomic.Int64))
		count := n.(*atomic.Int64).Add(1)
		if strings.HasSuffix(r.Host, "-shadow") {
			a.shadows.Add(1)
			if h := a.hold.Load(); h != nil {
				a.held.Add(1)
				select {
				case <-*h:
				case <-r.Context().Done():
				}
			}
		}
		switch {
		case strings.HasPrefix(r.URL.Path, "/flaky/") && count == 1:
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		case r.URL.Path == "/slow":
			<-r.Context().Done()
			return
		}
		w.Header().Set("X-App-Header", "app")
		fmt.Fprintf(w, "version=%s\nhost=%s\npath=%s\nx-added=%s\nx-removed=%s\nxfcc=%s\nbody=%s\n", a.version, r.Host, r.URL.RequestURI(),
			r.Header.Get("X-Added"), r.Header.Get("X-Removed"), r.Header.Get(headerXFCC), body)
	}))
	t.Cleanup(a.Close)
	return a
}

func (a *versionApp) count(path string) int64 {
	if n, ok := a.seen.Load(path); ok {
		return n.(*atomic.Int64).Load()
	}
	return 0
}

// vsMesh is a client proxy (web/frontend) and two versions of a backend
// (api/backend-v1, api/backend-v2), each behind its own proxy (STRICT
// mTLS), known as services backend-v1, backend-v2, and backend (both).
type vsMesh struct {
	client     *testProxy
	v1, v2     *versionApp
	http       *http.Client
	frontendID string
}

func newVSMesh(t *testing.T, virtualServices string) *vsMesh {
	t.Helper()
	ca := meshtest.NewCA(t, testTD)
	m := &vsMesh{v1: newVersionApp(t, "v1"), v2: newVersionApp(t, "v2")}
	s1 := startProxyLog(t, ca, "api", "backend-v1", m.v1.Server, testLogger(t))
	s2 := startProxyLog(t, ca, "api", "backend-v2", m.v2.Server, testLogger(t))
	for _, s := range []*testProxy{s1, s2} {
		mustApply(t, s, policyView(t, "s1", mesh(), strictMesh))
	}
	m.client = startProxy(t, ca, "web", "frontend", echoApp(t))
	m.frontendID = m.client.certs.uri
	both := serviceOf(s1)
	both.Hostname = "backend.api.svc.cluster.local"
	both.Endpoints = append(both.Endpoints, serviceOf(s2).Endpoints...)
	for i, v := range []string{"v1", "v2"} {
		both.Endpoints[i].Labels = map[string]string{"app": "backend", "version": v}
	}
	v := policyView(t, "c1", mesh(), "")
	v.Services = []registry.Service{both, serviceOf(s1), serviceOf(s2)}
	for _, r := range parse(t, virtualServices) {
		if err := config.Validate(r); err != nil {
			t.Fatal(err)
		}
		switch r.Kind {
		case config.KindDestinationRule:
			v.DestinationRules = append(v.DestinationRules, r)
		default:
			v.VirtualServices = append(v.VirtualServices, r)
		}
	}
	// Seeded, so that the shares the tests measure are reproducible.
	rng := rand.New(rand.NewPCG(1, 2))
	var mu sync.Mutex
	m.client.out.rnd = func() uint64 { mu.Lock(); defer mu.Unlock(); return rng.Uint64() }
	mustApply(t, m.client, v)
	m.http = proxyClient(t, m.client)
	m.http.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return m
}

func (m *vsMesh) get(t *testing.T, path string) (*http.Response, string) {
	t.Helper()
	resp, err := m.http.Get("http://backend.api.svc.cluster.local" + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

const vsHeader = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: backend, namespace: api}\nspec:\n"

// within fails unless got/n is want (a share, 0..1) within tolerance.
func within(t *testing.T, what string, got, n int, want, tolerance float64) {
	t.Helper()
	share := float64(got) / float64(n)
	t.Logf("%s: %d of %d (%.1f%%)", what, got, n, 100*share)
	if share < want-tolerance || share > want+tolerance {
		t.Errorf("%s: %.1f%% of %d requests, want %.0f%% ± %.0f points", what, 100*share, n, 100*want, 100*tolerance)
	}
}

func TestVirtualServiceWeightedSplit(t *testing.T) {
	m := newVSMesh(t, vsHeader+`  hosts: [backend]
  http:
  - route:
    - {destination: {host: backend-v1}, weight: 80}
    - {destination: {host: backend-v2}, weight: 20}
`)
	const n = 1000
	v1 := 0
	for i := 0; i < n; i++ {
		resp, body := m.get(t, "/")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: %d %s", i, resp.StatusCode, body)
		}
		if !strings.Contains(echoField(body, "xfcc"), m.frontendID) {
			t.Fatalf("the destination did not see the caller's identity over mTLS: %q", body)
		}
		if echoField(body, "version") == "v1" {
			v1++
		}
	}
	within(t, "backend-v1", v1, n, 0.80, 0.04)
	var cfg debugConfig
	getJSON(t, "http://"+m.client.AdminAddr().String()+"/debug/config", &cfg)
	if len(cfg.VirtualServices) != 1 || cfg.VirtualServices[0] != "api/backend" {
		t.Errorf("/debug/config virtualServices = %v", cfg.VirtualServices)
	}
}

func TestVirtualServiceMirror(t *testing.T) {
	m := newVSMesh(t, vsHeader+`  hosts: [backend]
  http:
  - route: [{destination: {host: backend-v1}}]
    mirror: {host: backend-v2}
    mirrorPercentage: {value: 25}
`)
	const n = 2000
	for i := 0; i < n; i++ {
		resp, body := m.get(t, "/m")
		if resp.StatusCode != http.StatusOK || echoField(body, "version") != "v1" || echoField(body, "host") != "backend.api.svc.cluster.local" {
			t.Fatalf("request %d: the caller's response changed: %d %q", i, resp.StatusCode, body)
		}
	}
	waitMirrors(t, m.client)
	if got := m.v2.count("/m"); got != m.v2.shadows.Load() {
		t.Errorf("backend-v2 got %d requests, %d of them with a -shadow Host", got, m.v2.shadows.Load())
	}
	within(t, "mirrored", int(m.v2.shadows.Load()), n, 0.25, 0.03)
	if m.v1.count("/m") != n {
		t.Errorf("backend-v1 got %d requests, want %d", m.v1.count("/m"), n)
	}
}

// TestVirtualServiceMirrorNeverDelaysTheCaller: with the mirror target
// stuck, the caller's requests are answered, and copies beyond the bound
// in flight are dropped.
func TestVirtualServiceMirrorNeverDelaysTheCaller(t *testing.T) {
	m := newVSMesh(t, vsHeader+`  hosts: [backend]
  http:
  - route: [{destination: {host: backend-v1}}]
    mirror: {host: backend-v2}
`)
	release := make(chan struct{})
	m.v2.hold.Store(&release)
	const n = maxMirrorsInFlight + 36
	start := time.Now()
	for i := 0; i < n; i++ {
		if resp, body := m.get(t, "/stuck"); resp.StatusCode != http.StatusOK || echoField(body, "version") != "v1" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	t.Logf("%d requests answered in %v with their mirrors stuck", n, time.Since(start))
	if got := len(m.client.out.mirrors.slots); got != maxMirrorsInFlight {
		t.Errorf("%d mirrors in flight, want the bound %d", got, maxMirrorsInFlight)
	}
	close(release)
	waitMirrors(t, m.client)
	if got := m.v2.shadows.Load(); got > maxMirrorsInFlight {
		t.Errorf("backend-v2 got %d copies; at most %d were in flight and the rest should have been dropped", got, maxMirrorsInFlight)
	}
}

// waitMirrors waits until no mirrored copy is in flight.
func waitMirrors(t *testing.T, p *testProxy) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(p.out.mirrors.slots) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d mirrors still in flight", len(p.out.mirrors.slots))
		}
		time.Sleep(time.Millisecond)
	}
}

func TestVirtualServiceRetriesFaultsAndTimeout(t *testing.T) {
	m := newVSMesh(t, vsHeader+`  hosts: [backend]
  http:
  - match: [{uri: {prefix: /flaky/retried}}]
    retries: {attempts: 2, retryOn: 5xx}
    route: [{destination: {host: backend-v1}}]
  - match: [{uri: {prefix: /abort}}]
    fault: {abort: {httpStatus: 503, percentage: {value: 100}}}
    route: [{destination: {host: backend-v1}}]
  - match: [{uri: {prefix: /delay}}]
    fault: {delay: {fixedDelay: 0.2s, percentage: {value: 100}}}
    route: [{destination: {host: backend-v1}}]
  - match: [{uri: {exact: /slow}}]
    timeout: 0.2s
    route: [{destination: {host: backend-v1}}]
  - route: [{destination: {host: backend-v1}}]
`)
	t.Run("a retry turns the app's 503 into a 200", func(t *testing.T) {
		resp, body := m.get(t, "/flaky/retried")
		if resp.StatusCode != http.StatusOK || echoField(body, "version") != "v1" {
			t.Errorf("got %d %q, want 200 from v1", resp.StatusCode, body)
		}
		if got := m.v1.count("/flaky/retried"); got != 2 {
			t.Errorf("the app saw %d tries, want 2", got)
		}
	})
	t.Run("a retried request carries its body again", func(t *testing.T) {
		resp, err := m.http.Post("http://backend.api.svc.cluster.local/flaky/retried-post", "text/plain", strings.NewReader("payload"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || echoField(string(b), "body") != "payload" || m.v1.count("/flaky/retried-post") != 2 {
			t.Errorf("got %d %q after %d tries, want 200 with the body on the second try", resp.StatusCode, b, m.v1.count("/flaky/retried-post"))
		}
	})
	t.Run("Istio's default retries do not retry a 503", func(t *testing.T) {
		if resp, _ := m.get(t, "/flaky/default"); resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("got %d, want the app's 503", resp.StatusCode)
		}
	})
	t.Run("fault abort", func(t *testing.T) {
		resp, body := m.get(t, "/abort")
		if resp.StatusCode != http.StatusServiceUnavailable || body != "fault filter abort" {
			t.Errorf("got %d %q", resp.StatusCode, body)
		}
		if m.v1.count("/abort") != 0 {
			t.Error("an aborted request reached the app")
		}
	})
	t.Run("fault delay", func(t *testing.T) {
		start := time.Now()
		resp, _ := m.get(t, "/delay")
		if took := time.Since(start); resp.StatusCode != http.StatusOK || took < 200*time.Millisecond {
			t.Errorf("got %d after %v, want 200 after at least 200ms", resp.StatusCode, took)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		start := time.Now()
		resp, body := m.get(t, "/slow")
		took := time.Since(start)
		if resp.StatusCode != http.StatusGatewayTimeout || body != "upstream request timeout" || took > 5*time.Second {
			t.Errorf("got %d %q after %v, want 504 after about 200ms", resp.StatusCode, body, took)
		}
	})
}

func TestVirtualServiceRedirectRewriteHeaders(t *testing.T) {
	m := newVSMesh(t, vsHeader+`  hosts: [backend]
  http:
  - match: [{uri: {prefix: /old}}]
    redirect: {uri: /new, authority: elsewhere.example.com}
  - match: [{uri: {prefix: /v1/}}]
    rewrite: {uri: /, authority: rewritten.example.com}
    headers:
      request: {set: {x-added: "yes"}, remove: [x-removed]}
      response: {add: {x-route: r1}, remove: [x-app-header]}
    route: [{destination: {host: backend-v2}}]
  - match: [{uri: {prefix: /only}}]
    route: [{destination: {host: backend-v1}}]
`)
	resp, _ := m.get(t, "/old/page?q=1")
	if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "http://elsewhere.example.com/new?q=1" {
		t.Errorf("redirect: %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}

	req, _ := http.NewRequest("GET", "http://backend.api.svc.cluster.local/v1/items?id=7", nil)
	req.Header.Set("X-Removed", "secret")
	resp, err := m.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	body := string(b)
	want := map[string]string{"version": "v2", "path": "/items?id=7", "host": "rewritten.example.com", "x-added": "yes", "x-removed": ""}
	for k, v := range want {
		if got := echoField(body, k); got != v {
			t.Errorf("the app saw %s=%q, want %q", k, got, v)
		}
	}
	if resp.Header.Get("X-Route") != "r1" || resp.Header.Get("X-App-Header") != "" {
		t.Errorf("response headers: %v", resp.Header)
	}

	if resp, _ := m.get(t, "/unmatched"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("a request no route matches: %d, want 404", resp.StatusCode)
	}
}

// backendSubsets is a DestinationRule of the vsMesh backend with a subset
// per version, and one that selects no endpoint.
const backendSubsets = `---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: backend, namespace: api}
spec:
  host: backend
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v3, labels: {version: v3}}
`

// TestVirtualServiceSubsets: a weighted split over the subsets of a
// DestinationRule sends each share to the endpoints of its subset only,
// over mTLS; a subset that selects no endpoint answers 503.
func TestVirtualServiceSubsets(t *testing.T) {
	m := newVSMesh(t, vsHeader+`  hosts: [backend]
  http:
  - match: [{uri: {prefix: /none}}]
    route: [{destination: {host: backend, subset: v3}}]
  - route:
    - {destination: {host: backend, subset: v1}, weight: 75}
    - {destination: {host: backend, subset: v2}, weight: 25}
`+backendSubsets)
	const n = 400
	v1 := 0
	for i := 0; i < n; i++ {
		resp, body := m.get(t, "/")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: %d %s", i, resp.StatusCode, body)
		}
		if !strings.Contains(echoField(body, "xfcc"), m.frontendID) {
			t.Fatalf("the destination did not see the caller's identity over mTLS: %q", body)
		}
		if echoField(body, "version") == "v1" {
			v1++
		}
	}
	within(t, "subset v1", v1, n, 0.75, 0.06)
	if got := m.v1.count("/") + m.v2.count("/"); got != n {
		t.Errorf("the apps saw %d requests, want %d", got, n)
	}
	resp, body := m.get(t, "/none")
	if resp.StatusCode != http.StatusServiceUnavailable || body != bodyNoUpstream {
		t.Errorf("a subset without endpoints: got %d %q, want 503 %q", resp.StatusCode, body, bodyNoUpstream)
	}
	if m.v1.count("/none")+m.v2.count("/none") != 0 {
		t.Error("a request for an empty subset reached an app")
	}
}

// TestVirtualServiceSubsetFailsClosed: without a DestinationRule defining
// it, a subset has no endpoints: 503, not every version of the host.
func TestVirtualServiceSubsetFailsClosed(t *testing.T) {
	m := newVSMesh(t, vsHeader+`  hosts: [backend]
  http:
  - route: [{destination: {host: backend, subset: v2}}]
`)
	resp, body := m.get(t, "/")
	if resp.StatusCode != http.StatusServiceUnavailable || body != bodyNoUpstream {
		t.Errorf("got %d %q, want 503 %q", resp.StatusCode, body, bodyNoUpstream)
	}
	if m.v1.count("/")+m.v2.count("/") != 0 {
		t.Error("a request for an undefined subset reached an app")
	}
}

// TestVirtualServiceGRPC: a gRPC call routed by a VirtualService keeps
// its status and message, which travel in trailers.
func TestVirtualServiceGRPC(t *testing.T) {
	ca := meshtest.NewCA(t, testTD)
	server := startProxyAt(t, ca, "api", "backend", grpcApp(t), testLogger(t))
	client := startProxy(t, ca, "web", "frontend", echoApp(t))
	mustApply(t, server, policyView(t, "s1", mesh(), strictMesh))
	v := policyView(t, "c1", mesh(), "")
	v.Services = []registry.Service{serviceOf(server)}
	v.VirtualServices = parse(t, vsHeader+"  hosts: [backend]\n  http:\n  - match: [{uri: {prefix: /grpc.health.v1.Health/}}]\n    route: [{destination: {host: backend}}]\n")
	mustApply(t, client, v)
	conn, err := grpc.NewClient("passthrough:///backend.api.svc.cluster.local",
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
	hc := healthpb.NewHealthClient(conn)
	if resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "ok"}); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Check(ok): %v %v", resp, err)
	}
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "nope"}); status.Code(err) != codes.NotFound {
		t.Errorf("Check(nope): %v, want NotFound from the app", err)
	}
}

// connectGet opens a CONNECT tunnel to target through p's outbound
// listener and sends GET /path over it; it returns the CONNECT status and,
// when the tunnel opened, the echoed version.
func connectGet(t *testing.T, p *testProxy, target, path string) (int, string) {
	t.Helper()
	c := dialRaw(t, p.OutboundAddr())
	defer c.Close()
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\nGET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", target, target, path)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"})
	if err != nil {
		t.Fatalf("CONNECT %s: %v", target, err)
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, ""
	}
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("through the tunnel to %s: %v", target, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return http.StatusOK, echoField(string(b), "version")
}

// TestVirtualServiceTCPRoutes: a CONNECT tunnel (a TCP stream) to a host
// follows the VirtualService's tcp routes by port, over mTLS; a port no
// tcp route matches goes to the host's own service; a subset no
// DestinationRule defines refuses the stream.
func TestVirtualServiceTCPRoutes(t *testing.T) {
	m := newVSMesh(t, vsHeader+`  hosts: [backend]
  tcp:
  - match: [{port: 9000}]
    route: [{destination: {host: backend-v2}}]
  - match: [{port: 9001}]
    route: [{destination: {host: backend, subset: v1}}]
`)
	for i := 0; i < 10; i++ {
		if code, v := connectGet(t, m.client, "backend.api.svc.cluster.local:9000", "/tcp"); code != http.StatusOK || v != "v2" {
			t.Fatalf("CONNECT to port 9000: %d from %q, want backend-v2", code, v)
		}
	}
	seen := map[string]bool{}
	for i := 0; i < 10; i++ {
		_, v := connectGet(t, m.client, "backend.api.svc.cluster.local:5432", "/tcp")
		seen[v] = true
	}
	if !seen["v1"] || !seen["v2"] {
		t.Errorf("CONNECT to a port without a tcp route reached %v, want both endpoints of backend", seen)
	}
	if code, _ := connectGet(t, m.client, "backend.api.svc.cluster.local:9001", "/tcp"); code != http.StatusServiceUnavailable {
		t.Errorf("CONNECT to an undefined subset: %d, want 503", code)
	}
	// HTTP to the host is not governed by a VirtualService of tcp routes.
	if resp, _ := m.get(t, "/http"); resp.StatusCode != http.StatusOK {
		t.Errorf("HTTP to backend: %d, want 200 by its own service", resp.StatusCode)
	}
}
