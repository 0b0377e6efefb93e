package proxy

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/zmesh/zmesh/internal/meshtest"
	"github.com/zmesh/zmesh/internal/registry"
)

func TestParseAppProbers(t *testing.T) {
	cases := []struct {
		name, json, wantErr string
		wantN               int
	}{
		{name: "empty is no probes", json: " ", wantN: 0},
		{name: "Istio's format, every kind", wantN: 3, json: `{
			"/app-health/web/livez": {"httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP", "httpHeaders": [{"name": "X-Probe", "value": "1"}]}, "timeoutSeconds": 2},
			"/app-health/web/readyz": {"tcpSocket": {"port": "8080"}},
			"/app-health/web/startupz": {"grpc": {"port": 9090, "service": "ready"}}}`},
		{name: "a path outside /app-health", json: `{"/metrics": {"tcpSocket": {"port": 1}}}`, wantErr: "not /app-health"},
		{name: "an unknown probe name", json: `{"/app-health/web/deadz": {"tcpSocket": {"port": 1}}}`, wantErr: "not /app-health"},
		{name: "two kinds", json: `{"/app-health/web/livez": {"tcpSocket": {"port": 1}, "grpc": {"port": 1}}}`, wantErr: "exactly one"},
		{name: "no kind", json: `{"/app-health/web/livez": {"timeoutSeconds": 1}}`, wantErr: "exactly one"},
		{name: "null probe", json: `{"/app-health/web/livez": null}`, wantErr: "null"},
		{name: "a named port", json: `{"/app-health/web/livez": {"httpGet": {"port": "http"}}}`, wantErr: "named ports"},
		{name: "port out of range", json: `{"/app-health/web/livez": {"httpGet": {"port": 70000}}}`, wantErr: "not a port"},
		{name: "grpc port out of range", json: `{"/app-health/web/livez": {"grpc": {"port": -1}}}`, wantErr: "out of range"},
		{name: "missing port", json: `{"/app-health/web/livez": {"tcpSocket": {}}}`, wantErr: "port is required"},
		{name: "a scheme other than HTTP(S)", json: `{"/app-health/web/livez": {"httpGet": {"port": 1, "scheme": "FILE"}}}`, wantErr: "scheme"},
		{name: "a relative path", json: `{"/app-health/web/livez": {"httpGet": {"port": 1, "path": "healthz"}}}`, wantErr: "start with /"},
		{name: "a header with a line break", json: `{"/app-health/web/livez": {"httpGet": {"port": 1, "httpHeaders": [{"name": "X", "value": "a\r\nB: c"}]}}}`, wantErr: "header"},
		{name: "a header name with a colon", json: `{"/app-health/web/livez": {"httpGet": {"port": 1, "httpHeaders": [{"name": "X:Y", "value": "a"}]}}}`, wantErr: "header"},
		{name: "a negative timeout", json: `{"/app-health/web/livez": {"tcpSocket": {"port": 1}, "timeoutSeconds": -1}}`, wantErr: "timeoutSeconds"},
		{name: "an unknown field", json: `{"/app-health/web/livez": {"exec": {"command": ["true"]}}}`, wantErr: "unknown field"},
		{name: "trailing data", json: `{} {}`, wantErr: "trailing"},
		{name: "not an object", json: `[1]`, wantErr: "app probers"},
		{name: "too large", json: `{"x": "` + strings.Repeat("a", maxAppProbersBytes) + `"}`, wantErr: "larger"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ap, err := ParseAppProbers([]byte(tc.json))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(ap) != tc.wantN {
				t.Fatalf("%d probes, want %d", len(ap), tc.wantN)
			}
		})
	}
}

func FuzzParseAppProbers(f *testing.F) {
	f.Add([]byte(`{"/app-health/web/livez": {"httpGet": {"path": "/healthz", "port": 8080, "httpHeaders": [{"name": "Host", "value": "x"}]}, "timeoutSeconds": 2}}`))
	f.Add([]byte(`{"/app-health/a/readyz": {"tcpSocket": {"port": "80"}}, "/app-health/a/startupz": {"grpc": {"port": 1}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ap, err := ParseAppProbers(data)
		if err != nil {
			return
		}
		for path, pr := range ap {
			if err := pr.validate(path); err != nil {
				t.Fatalf("accepted an invalid probe %s: %v", path, err)
			}
			if d := pr.timeout(); d <= 0 || d > maxProbeTimeout {
				t.Fatalf("timeout %s out of bounds", d)
			}
		}
	})
}

// probedProxy runs a STRICT proxy in front of the app at appAddr, with
// the probes in probersJSON (%d is replaced with the app's port).
func probedProxy(t *testing.T, appAddr, probersJSON string) *testProxy {
	t.Helper()
	_, port, _ := net.SplitHostPort(appAddr)
	ap, err := ParseAppProbers([]byte(strings.ReplaceAll(probersJSON, "%d", port)))
	if err != nil {
		t.Fatal(err)
	}
	w := registry.Workload{Name: "web", Namespace: "shop", ServiceAccount: "web"}
	p := startProxyFor(t, meshtest.NewCA(t, testTD), w, appAddr, nil)
	p.SetAppProbers(ap)
	mustApply(t, p, policyView(t, "v1", mesh(), strictMesh))
	return p
}

func TestAppHealthHTTPUnderStrict(t *testing.T) {
	var healthy atomic.Bool
	healthy.Store(true)
	got := make(chan *http.Request, 8)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r
		switch {
		case r.URL.Path == "/redirect":
			http.Redirect(w, r, "http://elsewhere.example/", http.StatusFound)
		case r.URL.Path != "/healthz":
			w.WriteHeader(http.StatusNotFound)
		case healthy.Load():
			w.Write([]byte(strings.Repeat("ok", 1<<16)))
		default:
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(app.Close)
	p := probedProxy(t, app.Listener.Addr().String(), `{
		"/app-health/web/livez": {"httpGet": {"path": "/healthz", "port": %d, "httpHeaders": [{"name": "X-Probe", "value": "live"}, {"name": "Host", "value": "probe.local"}]}},
		"/app-health/web/readyz": {"httpGet": {"path": "/redirect", "port": %d}}}`)

	// What the kubelet would do without the rewrite: refused by STRICT.
	if resp, err := plainClient().Get("http://" + p.InboundAddr().String() + "/healthz"); err == nil {
		resp.Body.Close()
		t.Fatalf("plaintext probe to the app's port through a STRICT inbound answered %d", resp.StatusCode)
	}

	probe := func(path string, hdr map[string]string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+p.AdminAddr().String()+path, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := plainClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		return resp.StatusCode, string(b)
	}
	kubelet := map[string]string{"User-Agent": "kube-probe/1.37", "X-Forwarded-Client-Cert": "By=x;URI=spiffe://cluster.local/ns/a/sa/admin", "Authorization": "Bearer t"}
	if code, body := probe("/app-health/web/livez", kubelet); code != 200 {
		t.Fatalf("livez of a healthy app = %d %q", code, body)
	}
	r := <-got
	if r.URL.Path != "/healthz" || r.Host != "probe.local" || r.Header.Get("X-Probe") != "live" || r.Header.Get("User-Agent") != "kube-probe/1.37" {
		t.Errorf("app got %s host %q headers %v", r.URL.Path, r.Host, r.Header)
	}
	if r.Header.Get("X-Forwarded-Client-Cert") != "" || r.Header.Get("Authorization") != "" {
		t.Errorf("the caller's headers reached the app through the probe: %v", r.Header)
	}

	healthy.Store(false)
	if code, _ := probe("/app-health/web/livez", nil); code != http.StatusServiceUnavailable {
		t.Errorf("livez of an unhealthy app = %d, want the app's 503", code)
	}
	<-got
	if code, _ := probe("/app-health/web/readyz", nil); code != http.StatusFound {
		t.Errorf("a redirect = %d, want 302 passed on, not followed", code)
	}
	<-got
	if code, _ := probe("/app-health/web/startupz", nil); code != http.StatusNotFound {
		t.Errorf("an unregistered probe = %d, want 404", code)
	}
	if code, _ := probe("/app-health/other/livez", nil); code != http.StatusNotFound {
		t.Errorf("another container's probe = %d, want 404", code)
	}
	select {
	case r := <-got:
		t.Errorf("the app got %s for an unregistered probe", r.URL.Path)
	default:
	}
}

func TestAppHealthTimeoutAndHTTPS(t *testing.T) {
	release := make(chan struct{})
	stuck := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(stuck.Close)
	t.Cleanup(func() { close(release) })
	tlsApp := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(tlsApp.Close)
	_, tlsPort, _ := net.SplitHostPort(tlsApp.Listener.Addr().String())
	p := probedProxy(t, stuck.Listener.Addr().String(), `{
		"/app-health/web/livez": {"httpGet": {"path": "/", "port": %d}, "timeoutSeconds": 1},
		"/app-health/web/readyz": {"httpGet": {"path": "/", "port": `+tlsPort+`, "scheme": "HTTPS"}}}`)

	start := time.Now()
	if code, body := adminGet(t, p, "/app-health/web/livez"); code != http.StatusInternalServerError || !strings.Contains(body, "probe failed") {
		t.Errorf("a probe past its timeout = %d %q, want 500", code, body)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("a probe with a 1s timeout took %s", d)
	}
	if code, body := adminGet(t, p, "/app-health/web/readyz"); code != 200 {
		t.Errorf("HTTPS probe (certificate not verified, as the kubelet's) = %d %q", code, body)
	}
}

func TestAppHealthTCPAndGRPC(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := health.NewServer()
	hs.SetServingStatus("ready", healthpb.HealthCheckResponse_NOT_SERVING)
	gs := grpc.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := strconv.Itoa(closed.Addr().(*net.TCPAddr).Port)
	closed.Close()
	p := probedProxy(t, ln.Addr().String(), `{
		"/app-health/web/livez": {"tcpSocket": {"port": %d}},
		"/app-health/side/livez": {"tcpSocket": {"port": `+closedPort+`}},
		"/app-health/web/readyz": {"grpc": {"port": %d, "service": "ready"}},
		"/app-health/web/startupz": {"grpc": {"port": %d}}}`)

	for _, tc := range []struct {
		path string
		want int
	}{
		{"/app-health/web/livez", 200},
		{"/app-health/side/livez", 500},
		{"/app-health/web/readyz", 500},
		{"/app-health/web/startupz", 200},
	} {
		if code, body := adminGet(t, p, tc.path); code != tc.want {
			t.Errorf("%s = %d %q, want %d", tc.path, code, body, tc.want)
		}
	}
	hs.SetServingStatus("ready", healthpb.HealthCheckResponse_SERVING)
	if code, body := adminGet(t, p, "/app-health/web/readyz"); code != 200 {
		t.Errorf("gRPC readyz once SERVING = %d %q", code, body)
	}
}

func plainClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
}
