package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/zmesh/zmesh/internal/meshtest"
	"github.com/zmesh/zmesh/internal/registry"
	"github.com/zmesh/zmesh/internal/xds"
)

// slowApp answers /slow only once release is closed (or the request is
// cancelled), and tells arrived when such a request has reached it.
func slowApp(t *testing.T) (app *httptest.Server, arrived <-chan struct{}, release chan struct{}) {
	t.Helper()
	arr := make(chan struct{}, 16)
	release = make(chan struct{})
	app = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/slow" {
			io.WriteString(w, "quick\n")
			return
		}
		arr <- struct{}{}
		select {
		case <-release:
			io.WriteString(w, "slow answer\n")
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(app.Close)
	return app, arr, release
}

// refused reports whether a new TCP connection to addr is refused.
func refused(addr net.Addr) bool {
	c, err := net.DialTimeout("tcp", addr.String(), time.Second)
	if err == nil {
		c.Close()
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

// adminGet returns the status and body of GET path on p's admin port.
func adminGet(t *testing.T, p *testProxy, path string) (int, string) {
	t.Helper()
	return get(t, &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}, "http://"+p.AdminAddr().String()+path)
}

type result struct {
	status int
	body   string
	err    error
}

// getAsync sends GET url with c and delivers the outcome on the channel.
func getAsync(c *http.Client, url string) <-chan result {
	ch := make(chan result, 1)
	go func() {
		resp, err := c.Get(url)
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		ch <- result{status: resp.StatusCode, body: string(b), err: err}
	}()
	return ch
}

func TestDrainLetsInFlightRequestFinish(t *testing.T) {
	noLeaks(t)
	app, arrived, release := slowApp(t)
	p := newPairWith(t, mesh(), strictMesh, app)
	if code, body := adminGet(t, p.server, "/ready"); code != 200 {
		t.Fatalf("/ready before drain = %d %q", code, body)
	}
	inflight := getAsync(p.http, "http://backend.api.svc.cluster.local/slow")
	<-arrived

	drained := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		drained <- p.server.Drain(ctx)
	}()
	waitFor(t, p.server.Draining)
	if code, body := adminGet(t, p.server, "/ready"); code != http.StatusServiceUnavailable || !strings.Contains(body, "draining") {
		t.Errorf("/ready while draining = %d %q, want 503 draining", code, body)
	}
	waitFor(t, func() bool { return refused(p.server.InboundAddr()) })
	select {
	case err := <-drained:
		t.Fatalf("Drain returned %v with a request in flight", err)
	default:
	}

	close(release)
	r := <-inflight
	if r.err != nil || r.status != 200 || r.body != "slow answer\n" {
		t.Fatalf("in-flight request across the drain: %d %q %v", r.status, r.body, r.err)
	}
	select {
	case err := <-drained:
		if err != nil {
			t.Fatalf("Drain: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Drain did not return after the last request ended")
	}
	if !refused(p.server.InboundAddr()) {
		t.Error("inbound accepts connections after the drain")
	}
	// The drained side's answer reached the caller with the connection
	// closed behind it: the client proxy's next call finds no listener.
	if code, _ := get(t, p.http, "http://backend.api.svc.cluster.local/"); code != http.StatusServiceUnavailable {
		t.Errorf("call to a drained proxy = %d, want 503", code)
	}
}

func TestDrainIsBoundedByItsContext(t *testing.T) {
	noLeaks(t)
	app, arrived, _ := slowApp(t) // never released: a stuck request
	p := newPairWith(t, mesh(), strictMesh, app)
	inflight := getAsync(p.http, "http://backend.api.svc.cluster.local/slow")
	<-arrived

	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := p.server.Drain(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Drain = %v, want the deadline's error", err)
	}
	p.server.stop()
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("drain and stop took %s with a 300ms bound", d)
	}
	// The stuck request was cut, not left hanging.
	select {
	case r := <-inflight:
		if r.err == nil && r.status == 200 {
			t.Fatalf("stuck request answered %d %q", r.status, r.body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("stuck request still open after the proxy stopped")
	}
}

// TestDrainWaitsForTCPStreams checks goroutines (TestMain) but not
// descriptors: tcpApp's io.Copy between TCP connections uses splice(2),
// whose pipes the runtime pools beyond the test.
func TestDrainWaitsForTCPStreams(t *testing.T) {
	cli, srv, _ := tcpPair(t, "frontend", strictMesh)
	c, br := connect(t, cli, "backend.api.svc.cluster.local:9000")
	if greet, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(greet, "220") {
		t.Fatalf("greeting = %q, %v", greet, err)
	}
	drained := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		drained <- srv.Drain(ctx)
	}()
	waitFor(t, func() bool { return refused(srv.InboundAddr()) })

	// The stream opened before the drain still carries bytes both ways.
	io.WriteString(c, "still here\n")
	if got, err := br.ReadString('\n'); err != nil || got != "still here\n" {
		t.Fatalf("echo during drain = %q, %v", got, err)
	}
	select {
	case err := <-drained:
		t.Fatalf("Drain returned %v with a TCP stream open", err)
	default:
	}
	c.Close()
	select {
	case err := <-drained:
		if err != nil {
			t.Fatalf("Drain: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Drain did not return after the stream ended")
	}
}

// TestDrainKeepsOutboundUntilInboundIsDone: an app finishing a request
// may still call out; the outbound listener closes only once the inbound
// side has drained, and its CONNECT tunnels are waited for too.
func TestDrainKeepsOutboundUntilInboundIsDone(t *testing.T) {
	noLeaks(t)
	ca := meshtest.NewCA(t, testTD)
	app, arrived, release := slowApp(t)
	// frontend is in front of the slow app and calls backend.
	backend := startProxy(t, ca, "api", "backend", echoApp(t))
	frontend := startProxy(t, ca, "web", "frontend", app)
	mustApply(t, backend, policyView(t, "b1", mesh(), strictMesh))
	mustApply(t, frontend, &xds.View{Version: "f1", Mesh: mesh(), Services: []registry.Service{serviceOf(backend)}})
	caller := startProxy(t, ca, "web", "caller", nil)
	mustApply(t, caller, &xds.View{Version: "c1", Mesh: mesh(), Services: []registry.Service{serviceOf(frontend)}})

	inflight := getAsync(proxyClient(t, caller), "http://frontend.web.svc.cluster.local/slow")
	<-arrived
	tunnel, br := connect(t, frontend, "backend.api.svc.cluster.local:80")
	drained := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		drained <- frontend.Drain(ctx)
	}()
	waitFor(t, func() bool { return refused(frontend.InboundAddr()) })

	// While the inbound request is in flight, the app still calls out.
	if code, body := get(t, proxyClient(t, frontend), "http://backend.api.svc.cluster.local/"); code != 200 {
		t.Fatalf("outbound call during the inbound drain = %d %q", code, body)
	}
	close(release)
	if r := <-inflight; r.err != nil || r.status != 200 {
		t.Fatalf("in-flight request: %d %q %v", r.status, r.body, r.err)
	}
	// The outbound listener closes; the open tunnel still works.
	waitFor(t, func() bool { return refused(frontend.OutboundAddr()) })
	io.WriteString(tunnel, "GET / HTTP/1.1\r\nHost: backend\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("request through the tunnel during the drain: %v %v", resp, err)
	}
	resp.Body.Close()
	select {
	case err := <-drained:
		t.Fatalf("Drain returned %v with a tunnel open", err)
	default:
	}
	tunnel.Close()
	select {
	case err := <-drained:
		if err != nil {
			t.Fatalf("Drain: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Drain did not return after the tunnel closed")
	}
}

func TestQuitQuitQuit(t *testing.T) {
	p := startProxy(t, meshtest.NewCA(t, testTD), "web", "frontend", nil)
	serve := func(method, remote string) int {
		req := httptest.NewRequest(method, "/quitquitquit", nil)
		req.RemoteAddr = remote
		rec := httptest.NewRecorder()
		p.admin.Handler.ServeHTTP(rec, req)
		return rec.Code
	}
	quit := func() bool {
		select {
		case <-p.QuitRequested():
			return true
		default:
			return false
		}
	}
	for _, tc := range []struct {
		name, method, remote string
		want                 int
	}{
		{"another host may not stop the proxy", http.MethodPost, "10.1.2.3:4000", http.StatusForbidden},
		{"nor a mapped IPv4 address that is not loopback", http.MethodPost, "[::ffff:10.1.2.3]:4000", http.StatusForbidden},
		{"nor a GET from loopback", http.MethodGet, "127.0.0.1:4000", http.StatusMethodNotAllowed},
		{"nor a malformed peer", http.MethodPost, "localhost", http.StatusForbidden},
	} {
		if got := serve(tc.method, tc.remote); got != tc.want || quit() {
			t.Errorf("%s: %d (quit %v), want %d and no quit", tc.name, got, quit(), tc.want)
		}
	}
	// Over a real connection from loopback.
	resp, err := http.Post("http://"+p.AdminAddr().String()+"/quitquitquit", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || !quit() {
		t.Fatalf("POST from loopback = %d, quit %v", resp.StatusCode, quit())
	}
	if got := serve(http.MethodPost, "[::1]:4000"); got != 200 {
		t.Errorf("second POST = %d, want 200", got)
	}
}

// TestReadyMeansCertificateAndConfig: /ready is what `zmesh up` waits for
// before starting the app, so it is 200 only with a certificate valid now
// and configuration applied, and never while draining.
func TestReadyMeansCertificateAndConfig(t *testing.T) {
	ca := meshtest.NewCA(t, testTD)
	now := time.Now()
	var clock atomic.Int64 // unix nanoseconds
	clock.Store(now.UnixNano())
	w := registry.Workload{Name: "frontend", Namespace: "web", ServiceAccount: "frontend"}
	p := startProxyFor(t, ca, w, "127.0.0.1:1", func(c *Config) { c.Now = func() time.Time { return time.Unix(0, clock.Load()) } })
	ready := func() (int, string) { return adminGet(t, p, "/ready") }

	if code, body := ready(); code != 503 || !strings.Contains(body, "no configuration") {
		t.Errorf("before any config: %d %q", code, body)
	}
	mustApply(t, p, &xds.View{Version: "v1", Mesh: mesh()})
	if code, body := ready(); code != 200 {
		t.Errorf("with config and certificate: %d %q", code, body)
	}
	clock.Store(now.Add(2 * time.Hour).UnixNano()) // past the test certificate's hour
	if code, body := ready(); code != 503 || !strings.Contains(body, "not valid now") {
		t.Errorf("with an expired certificate: %d %q", code, body)
	}
	clock.Store(now.UnixNano())
	p.certs.svid.Store(nil)
	if code, body := ready(); code != 503 || !strings.Contains(body, "no certificate") {
		t.Errorf("without a certificate: %d %q", code, body)
	}
	p.certs.rotate(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if code, body := ready(); code != 503 || !strings.Contains(body, "draining") {
		t.Errorf("drained: %d %q", code, body)
	}
	if err := p.Drain(ctx); err == nil {
		t.Error("a second Drain succeeded")
	}
}
