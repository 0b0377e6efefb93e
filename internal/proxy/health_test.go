package proxy

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/zmesh/zmesh/internal/meshtest"
	"github.com/zmesh/zmesh/internal/registry"
	"github.com/zmesh/zmesh/internal/xds"
)

// kubeletProxy runs a STRICT proxy for shop/web in front of app with the
// health and app-health listeners on, as an injected pod has them (on
// loopback here: what they route does not depend on where they listen).
func kubeletProxy(t *testing.T, app *httptest.Server, probers string) *testProxy {
	t.Helper()
	w := registry.Workload{Name: "web", Namespace: "shop", ServiceAccount: "web"}
	p := startProxyFor(t, meshtest.NewCA(t, testTD), w, app.Listener.Addr().String(), func(c *Config) {
		c.HealthAddr = "127.0.0.1:0"
		c.AppHealthAddr = "127.0.0.1:0"
	})
	_, port, _ := net.SplitHostPort(app.Listener.Addr().String())
	ap, err := ParseAppProbers([]byte(strings.ReplaceAll(probers, "%d", port)))
	if err != nil {
		t.Fatal(err)
	}
	p.SetAppProbers(ap)
	return p
}

// call sends method path to addr over a fresh connection, as the kubelet
// does, and returns the status and body.
func call(t *testing.T, method string, addr net.Addr, path string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+addr.String()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := plainClient().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	return resp.StatusCode, string(b)
}

func TestHealthListenerAnswersReadinessOnly(t *testing.T) {
	p := kubeletProxy(t, echoApp(t), `{}`)
	health := p.HealthAddr()
	if code, body := call(t, "GET", health, "/healthz/ready"); code != http.StatusServiceUnavailable || !strings.Contains(body, "no configuration") {
		t.Errorf("before config: %d %q, want 503", code, body)
	}
	mustApply(t, p, policyView(t, "v1", mesh(), strictMesh))
	if code, body := call(t, "GET", health, "/healthz/ready"); code != http.StatusOK {
		t.Errorf("ready: %d %q, want 200", code, body)
	}
	// The same answer as the admin's /ready: one source of truth.
	if code, _ := adminGet(t, p, "/ready"); code != http.StatusOK {
		t.Errorf("admin /ready = %d while the health port says ready", code)
	}
	for _, tc := range []struct{ method, path string }{
		{"GET", "/ready"},
		{"GET", "/metrics"},
		{"GET", "/debug/config"},
		{"GET", "/debug/certs"},
		{"POST", "/quitquitquit"},
		{"GET", "/app-health/web/readyz"},
		{"GET", "/healthz/ready/x"},
	} {
		if code, body := call(t, tc.method, health, tc.path); code != http.StatusNotFound {
			t.Errorf("health listener: %s %s = %d %q, want 404", tc.method, tc.path, code, body)
		}
	}
	if code, _ := call(t, "POST", health, "/healthz/ready"); code != http.StatusMethodNotAllowed {
		t.Errorf("POST /healthz/ready = %d, want 405", code)
	}
	select {
	case <-p.QuitRequested():
		t.Fatal("the health listener stopped the proxy")
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if code, body := call(t, "GET", health, "/healthz/ready"); code != http.StatusServiceUnavailable || !strings.Contains(body, "draining") {
		t.Errorf("draining: %d %q, want 503 draining", code, body)
	}
}

// TestAppHealthListenerServesOnlyProbes: the kubelet's rewritten probe
// reaches the real app through the app-health listener under STRICT, and
// nothing else of the admin's is served there: not /debug/*, not
// /metrics. POST /quitquitquit is, from loopback, as on Istio's 15020.
func TestAppHealthListenerServesOnlyProbes(t *testing.T) {
	got := make(chan string, 4)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.URL.Path
		if r.URL.Path != "/healthz" {
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	t.Cleanup(app.Close)
	p := kubeletProxy(t, app, `{"/app-health/app/livez": {"httpGet": {"path": "/healthz", "port": %d}},
		"/app-health/app/readyz": {"tcpSocket": {"port": %d}}}`)
	mustApply(t, p, policyView(t, "v1", mesh(), strictMesh))
	probes := p.AppHealthAddr()

	if code, body := call(t, "GET", probes, "/app-health/app/livez"); code != http.StatusOK {
		t.Fatalf("livez = %d %q", code, body)
	}
	if path := <-got; path != "/healthz" {
		t.Errorf("app got %q", path)
	}
	if code, body := call(t, "GET", probes, "/app-health/app/readyz"); code != http.StatusOK {
		t.Errorf("readyz (TCP) = %d %q", code, body)
	}
	if code, _ := call(t, "GET", probes, "/app-health/app/startupz"); code != http.StatusNotFound {
		t.Errorf("unregistered startupz = %d, want 404", code)
	}
	for _, tc := range []struct{ method, path string }{
		{"GET", "/debug/config"},
		{"GET", "/debug/certs"},
		{"GET", "/metrics"},
		{"GET", "/ready"},
		{"GET", "/healthz/ready"},
		{"GET", "/app-health/app/livez/../../debug/config"},
	} {
		if code, body := call(t, tc.method, probes, tc.path); code != http.StatusNotFound && code != http.StatusMovedPermanently {
			t.Errorf("app-health listener: %s %s = %d %q, want 404", tc.method, tc.path, code, body)
		}
	}
	// The admin listener still has everything, probes included.
	if code, _ := adminGet(t, p, "/app-health/app/readyz"); code != http.StatusOK {
		t.Errorf("admin /app-health = %d", code)
	}
	if code, _ := adminGet(t, p, "/debug/config"); code != http.StatusOK {
		t.Errorf("admin /debug/config = %d", code)
	}

	// Prometheus scrapes the pod's status port.
	if code, body := call(t, "GET", probes, "/stats/prometheus"); code != http.StatusOK || !strings.Contains(body, "# TYPE ") {
		t.Errorf("GET /stats/prometheus = %d %.200q, want the proxy's metrics", code, body)
	}

	// A Job's app, done, stops its sidecar on the status port.
	if code, _ := call(t, "GET", probes, "/quitquitquit"); code != http.StatusMethodNotAllowed {
		t.Errorf("GET /quitquitquit = %d, want 405", code)
	}
	select {
	case <-p.QuitRequested():
		t.Fatal("the proxy stopped before any POST /quitquitquit")
	default:
	}
	if code, body := call(t, "POST", probes, "/quitquitquit"); code != http.StatusOK {
		t.Fatalf("POST /quitquitquit on the app-health listener = %d %q", code, body)
	}
	select {
	case <-p.QuitRequested():
	case <-time.After(5 * time.Second):
		t.Fatal("POST /quitquitquit on the app-health listener did not ask the proxy to stop")
	}
}

// TestHealthListenerIsBounded: one source cannot hold more than
// healthPerSource connections; past it, connections are closed at once,
// and a slot comes back when one closes.
func TestHealthListenerIsBounded(t *testing.T) {
	p := kubeletProxy(t, echoApp(t), `{}`)
	var held []net.Conn
	for range healthPerSource {
		c, err := net.Dial("tcp", p.HealthAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	t.Cleanup(func() {
		for _, c := range held {
			c.Close()
		}
	})
	// Each held connection is accepted (it counts) once the server
	// answers on it; ask on all of them.
	for _, c := range held {
		io.WriteString(c, "GET /healthz/ready HTTP/1.1\r\nHost: x\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 64)); err != nil {
			t.Fatalf("held connection: %v", err)
		}
	}
	// Past the bound, the connection is reset as soon as it is accepted:
	// the dial itself may see the reset.
	if over, err := net.Dial("tcp", p.HealthAddr().String()); err == nil {
		defer over.Close()
		io.WriteString(over, "GET /healthz/ready HTTP/1.1\r\nHost: x\r\n\r\n")
		over.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := over.Read(make([]byte, 64)); err == nil {
			t.Fatalf("connection past the bound answered %d bytes", n)
		} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("connection past the bound left open")
		}
	}
	waitFor(t, func() bool {
		_, metrics := adminGet(t, p, "/metrics")
		return strings.Contains(metrics, `zmesh_listener_connections_refused_total{listener="health",reason="per_source"} 1`)
	})
	held[0].Close()
	held = held[1:]
	waitFor(t, func() bool {
		resp, err := plainClient().Get("http://" + p.HealthAddr().String() + "/healthz/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	})
}

// TestHealthListenersOff: without the addresses, neither listener exists.
func TestHealthListenersOff(t *testing.T) {
	p := startProxy(t, meshtest.NewCA(t, testTD), "web", "frontend", nil)
	if p.HealthAddr() != nil || p.AppHealthAddr() != nil {
		t.Fatalf("listeners %v %v without addresses", p.HealthAddr(), p.AppHealthAddr())
	}
	mustApply(t, p, &xds.View{Version: "v1", Mesh: mesh()})
}
