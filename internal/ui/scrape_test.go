package ui

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zmesh/zmesh/internal/registry"
)

const goodMetrics = "# TYPE istio_requests_total counter\nistio_requests_total{reporter=\"destination\",source_workload=\"frontend\",source_workload_namespace=\"web\",destination_workload=\"backend\",destination_workload_namespace=\"api\",response_code=\"200\",connection_security_policy=\"mutual_tls\"} 7\n"

// proxyAt returns a workload whose proxy's admin port is srv.
func proxyAt(name string, srv *httptest.Server) registry.Workload {
	addr := strings.TrimPrefix(srv.URL, "http://")
	host, _, _ := net.SplitHostPort(addr)
	return registry.Workload{Name: name, Namespace: "ns", HasProxy: true, Address: net.JoinHostPort(host, "1"), AdminAddress: addr}
}

func TestScrape(t *testing.T) {
	good := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(goodMetrics))
	}))
	defer good.Close()
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(release)
	huge := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for range 100 {
			w.Write([]byte(strings.Repeat("# padding\n", 1000)))
		}
	}))
	defer huge.Close()
	redirect := httptest.NewServer(http.RedirectHandler(good.URL+"/metrics", http.StatusFound))
	defer redirect.Close()
	garbage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("<html>secret-token-123 {{{\n"))
	}))
	defer garbage.Close()

	otherHost := proxyAt("other-host", good)
	otherHost.Address = "192.0.2.1:15006"
	noAdmin := registry.Workload{Name: "no-admin", Namespace: "ns", HasProxy: true, Address: "127.0.0.1:1"}
	noProxy := registry.Workload{Name: "no-proxy", Namespace: "ns", Address: "127.0.0.1:2", AdminAddress: "127.0.0.1:3"}

	s := NewScraper(ScraperConfig{Timeout: 300 * time.Millisecond, MaxBytes: 64 << 10})
	defer s.Close()
	start := time.Now()
	got := s.Scrape(context.Background(), []registry.Workload{proxyAt("good", good), proxyAt("slow", slow), proxyAt("huge", huge),
		proxyAt("redirect", redirect), proxyAt("garbage", garbage), otherHost, noAdmin, noProxy})
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("Scrape took %v with a 300ms time-out", el)
	}
	if g := got["ns/good"]; g.Sample == nil || len(g.Sample.Series) != 1 || g.Sample.Series[0].Value != 7 {
		t.Errorf("good = %+v", g)
	}
	for key, wantErr := range map[string]string{
		"ns/slow":       "no answer in time",
		"ns/huge":       "larger than",
		"ns/redirect":   "answered 302",
		"ns/garbage":    "not Prometheus text",
		"ns/other-host": "not on the host",
		"ns/no-admin":   "no admin address",
	} {
		g, ok := got[key]
		if !ok || g.Sample != nil || !strings.Contains(g.Err, wantErr) {
			t.Errorf("%s = %+v, want error with %q", key, g, wantErr)
		}
	}
	if strings.Contains(got["ns/garbage"].Err, "secret") {
		t.Errorf("what a proxy sent is shown: %q", got["ns/garbage"].Err)
	}
	if _, ok := got["ns/no-proxy"]; ok {
		t.Error("a workload without a proxy was read")
	}
}

func TestScrapeBoundsConcurrency(t *testing.T) {
	var inFlight, most atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		time.Sleep(20 * time.Millisecond) // holds the slot so overlapping reads show
		w.Write([]byte(goodMetrics))
	}))
	defer srv.Close()
	var ws []registry.Workload
	for i := range 12 {
		ws = append(ws, proxyAt(string(rune('a'+i)), srv))
	}
	s := NewScraper(ScraperConfig{Concurrency: 3})
	defer s.Close()
	got := s.Scrape(context.Background(), ws)
	if len(got) != 12 || most.Load() > 3 || most.Load() < 2 {
		t.Errorf("%d readings, at most %d at once; want 12, at most 3", len(got), most.Load())
	}
}

func TestLiveReadsOnlyWhenAskedAndAtMostOncePerInterval(t *testing.T) {
	var reads atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := reads.Add(1)
		w.Write([]byte(strings.Replace(goodMetrics, "} 7", "} "+string(rune('0'+2*n)), 1)))
	}))
	defer srv.Close()
	var mu sync.Mutex
	now := time.Unix(1000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	s := NewScraper(ScraperConfig{Now: clock})
	defer s.Close()
	w := proxyAt("backend", srv)
	w.Namespace = "api"
	l := NewLive(LiveConfig{Scraper: s, Now: clock, MinInterval: time.Second,
		Inputs: func() Inputs { return Inputs{Workloads: []registry.Workload{w}, Mesh: testMesh} }})
	if reads.Load() != 0 {
		t.Fatal("read before anyone asked")
	}
	m1 := l.Model(context.Background())
	m2 := l.Model(context.Background())
	if reads.Load() != 1 || m1 != m2 {
		t.Errorf("%d reads for two views within the interval, want 1", reads.Load())
	}
	advance(2 * time.Second)
	m3 := l.Model(context.Background())
	if reads.Load() != 2 || len(m3.Edges) != 1 || m3.Edges[0].Requests != 4 || m3.Edges[0].Rate != 1 {
		t.Errorf("second reading: %d reads, edges %+v; want 4 requests at 1/s", reads.Load(), m3.Edges)
	}
}

func TestLiveRateSpansAFailedReading(t *testing.T) {
	var reads atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch reads.Add(1) {
		case 1:
			w.Write([]byte(strings.Replace(goodMetrics, "} 7", "} 2", 1)))
		case 2:
			http.Error(w, "busy", http.StatusServiceUnavailable)
		default:
			w.Write([]byte(strings.Replace(goodMetrics, "} 7", "} 6", 1)))
		}
	}))
	defer srv.Close()
	now := time.Unix(1000, 0)
	clock := func() time.Time { return now }
	s := NewScraper(ScraperConfig{Now: clock})
	defer s.Close()
	w := proxyAt("backend", srv)
	w.Namespace = "api"
	l := NewLive(LiveConfig{Scraper: s, Now: clock, Inputs: func() Inputs { return Inputs{Workloads: []registry.Workload{w}, Mesh: testMesh} }})
	l.Model(context.Background())
	now = now.Add(2 * time.Second)
	if m := l.Model(context.Background()); len(m.Edges) != 0 || m.Workloads[0].MetricsError == "" {
		t.Fatalf("failed reading: %+v", m)
	}
	now = now.Add(2 * time.Second)
	if m := l.Model(context.Background()); len(m.Edges) != 1 || m.Edges[0].Rate != 1 {
		t.Errorf("rate after a failed reading = %+v, want (6-2)/4s = 1", m.Edges)
	}
}

func TestLiveReadingOutlivesTheViewerWhoAskedForIt(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(goodMetrics)) }))
	defer srv.Close()
	s := NewScraper(ScraperConfig{})
	defer s.Close()
	w := proxyAt("backend", srv)
	w.Namespace = "api"
	l := NewLive(LiveConfig{Scraper: s, Inputs: func() Inputs { return Inputs{Workloads: []registry.Workload{w}, Mesh: testMesh} }})
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the viewer went away
	if m := l.Model(ctx); len(m.Edges) != 1 || m.Workloads[0].MetricsError != "" {
		t.Errorf("a reading shared with every viewer failed with its first viewer: %+v", m)
	}
}
