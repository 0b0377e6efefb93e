package proxy

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	networking "istio.io/api/networking/v1alpha3"
)

// TestDestinationRuleConnectionPool is Istio's circuit breaking task at
// its smallest: with maxConnections 1 and http1MaxPendingRequests 1, one
// request is in flight, one waits, and a third is refused at once (503,
// flag UO) without reaching the server; the waiting one is served when
// the first ends.
func TestDestinationRuleConnectionPool(t *testing.T) {
	gate := make(chan struct{})
	var arrived atomic.Int32
	first := make(chan struct{}, 1)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if arrived.Add(1) == 1 {
			first <- struct{}{}
		}
		<-gate
	}))
	t.Cleanup(app.Close)
	t.Cleanup(func() {
		select {
		case <-gate:
		default:
			close(gate)
		}
	})
	p := newPairWith(t, mesh(), "", app)
	mustApply(t, p.client, clientViewFor(t, "c2", p.server, backendDR(`  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 1}
      http: {http1MaxPendingRequests: 1}`)))

	codes := make(chan int, 3)
	send := func() {
		resp, err := p.http.Get("http://backend.api.svc.cluster.local/")
		if err != nil {
			t.Errorf("GET: %v", err)
			codes <- 0
			return
		}
		resp.Body.Close()
		codes <- resp.StatusCode
	}
	go send()
	select {
	case <-first:
	case <-time.After(10 * time.Second):
		t.Fatal("the first request did not reach the app")
	}
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() { defer wg.Done(); send() }()
	}
	// Of the two sent while the first is in flight, one waits and the
	// other overflows: the overflow answers while the gate is shut.
	select {
	case code := <-codes:
		if code != http.StatusServiceUnavailable {
			t.Fatalf("while the pool is full: %d, want 503", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no request was refused while the pool was full")
	}
	close(gate)
	wg.Wait()
	for range 2 {
		if code := <-codes; code != 200 {
			t.Errorf("a request admitted by the pool answered %d", code)
		}
	}
	if n := arrived.Load(); n != 2 {
		t.Errorf("the app saw %d requests, want 2 (the refused one never left the client proxy)", n)
	}
	if m := scrape(t, p.client); metricLine(m, "istio_requests_total{", `response_flags="UO"`) == "" {
		t.Error("no istio_requests_total with response_flags UO")
	}
}

// TestConnPoolMaxRequests: http2MaxRequests refuses past its count at
// once, without waiting, and a release makes room again.
func TestConnPoolMaxRequests(t *testing.T) {
	c := newConnPool(&networking.ConnectionPoolSettings{Http: &networking.ConnectionPoolSettings_HTTPSettings{Http2MaxRequests: 2}})
	for i := range 2 {
		if !c.acquire(t.Context()) {
			t.Fatalf("request %d refused within http2MaxRequests", i+1)
		}
	}
	if c.acquire(t.Context()) {
		t.Fatal("a third request admitted with http2MaxRequests 2")
	}
	c.release()
	if !c.acquire(t.Context()) {
		t.Fatal("refused after a release")
	}
	// With maxConnections too, a refusal for want of a connection gives
	// the request count back.
	c = newConnPool(&networking.ConnectionPoolSettings{Tcp: &networking.ConnectionPoolSettings_TCPSettings{MaxConnections: 1},
		Http: &networking.ConnectionPoolSettings_HTTPSettings{Http2MaxRequests: 5, Http1MaxPendingRequests: 1}})
	if !c.acquire(t.Context()) {
		t.Fatal("first refused")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if c.acquire(ctx) {
		t.Fatal("admitted with no connection free and a cancelled context")
	}
	if n := c.requests.Load(); n != 1 {
		t.Errorf("%d requests counted, want 1", n)
	}
}

func TestConnPoolUnlimitedByDefault(t *testing.T) {
	if newConnPool(nil) != nil {
		t.Error("no settings made a pool")
	}
	var c *connPool
	if !c.acquire(t.Context()) {
		t.Error("a nil pool refused")
	}
	c.release()
}
