package echo

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// forwardProxy stands in for the workload's outbound proxy: it records
// the proxy-form requests it receives and answers them itself with
// respond, as if it had forwarded them to the named service.
type forwardProxy struct {
	*httptest.Server
	mu   sync.Mutex
	seen []*http.Request
}

func newForwardProxy(t *testing.T, respond http.HandlerFunc) *forwardProxy {
	t.Helper()
	p := &forwardProxy{}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.seen = append(p.seen, r)
		p.mu.Unlock()
		respond(w, r)
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *forwardProxy) requests() []*http.Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*http.Request(nil), p.seen...)
}

// clientVia returns a client that sends every request through p, as the
// default client does when HTTP_PROXY names p.
func (p *forwardProxy) clientVia(t *testing.T) *http.Client {
	u, _ := url.Parse(p.URL)
	c := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(u)}}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func TestCallGoesThroughTheProxyInProxyForm(t *testing.T) {
	proxy := newForwardProxy(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden)
		w.Write([]byte("RBAC: access denied"))
	})
	base, c := newTestServer(t, Config{Client: proxy.clientVia(t)})

	resp, body := get(t, c, http.MethodGet, base+"/call/backend.api.svc.cluster.local/headers/x%2Fy?q=1&r=%20", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d, want 200 (the call was made); body %s", resp.StatusCode, body)
	}
	res := decode[CallResult](t, body)
	if res.Status != http.StatusForbidden || res.Body != "RBAC: access denied" || res.Truncated {
		t.Errorf("result = %+v; want upstream status 403 and its body", res)
	}
	reqs := proxy.requests()
	if len(reqs) != 1 {
		t.Fatalf("proxy saw %d requests, want 1", len(reqs))
	}
	r := reqs[0]
	want := "http://backend.api.svc.cluster.local/headers/x%2Fy?q=1&r=%20"
	if r.RequestURI != want || r.Host != "backend.api.svc.cluster.local" || r.Method != "GET" {
		t.Errorf("proxy saw %s %s (Host %s), want GET %s", r.Method, r.RequestURI, r.Host, want)
	}
	if res.URL != want {
		t.Errorf("result url = %q, want %q", res.URL, want)
	}
}

func TestCallTargets(t *testing.T) {
	for _, tc := range []struct {
		name, path, query, want string
	}{
		{"host only", "/call/backend", "", "http://backend/"},
		{"host and slash", "/call/backend/", "", "http://backend/"},
		{"short name with port", "/call/backend:8000/a/b", "", "http://backend:8000/a/b"},
		{"query kept", "/call/backend.api/p", "x=1&y", "http://backend.api/p?x=1&y"},
		{"nested call", "/call/frontend.web/call/backend.api/", "", "http://frontend.web/call/backend.api/"},
		{"ipv4", "/call/10.0.0.1:80/", "", "http://10.0.0.1:80/"},
		{"ipv6", "/call/[::1]:80/", "", "http://[::1]:80/"},
		{"escapes kept", "/call/h/a%20b%3Fc", "", "http://h/a%20b%3Fc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := callTarget(tc.path, tc.query)
			if err != nil || got != tc.want {
				t.Errorf("callTarget(%q, %q) = %q, %v; want %q", tc.path, tc.query, got, err, tc.want)
			}
		})
	}
}

func TestCallRejectsBadInput(t *testing.T) {
	proxy := newForwardProxy(t, func(w http.ResponseWriter, r *http.Request) {})
	base, c := newTestServer(t, Config{Client: proxy.clientVia(t)})
	for _, tc := range []struct {
		name, method, path string
		want               int
	}{
		{"no host", "GET", "/call/", http.StatusBadRequest},
		{"empty host", "GET", "/call//path", http.StatusBadRequest},
		{"user info", "GET", "/call/user@evil/", http.StatusBadRequest},
		{"escaped slash in host", "GET", "/call/a%2Fb/", http.StatusBadRequest},
		{"percent in host", "GET", "/call/a%40b/", http.StatusBadRequest},
		{"bad ipv6", "GET", "/call/[::1/", http.StatusBadRequest},
		{"not GET", "POST", "/call/backend/", http.StatusMethodNotAllowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := get(t, c, tc.method, base+tc.path, nil)
			if resp.StatusCode != tc.want {
				t.Fatalf("%s %s = %d %s, want %d", tc.method, tc.path, resp.StatusCode, body, tc.want)
			}
			if e := decode[errorBody](t, body); e.Error == "" {
				t.Errorf("no error message in %q", body)
			}
		})
	}
	if n := len(proxy.requests()); n != 0 {
		t.Errorf("proxy saw %d requests for bad input, want 0", n)
	}
}

func TestCallReports502WhenTheCallCannotBeMade(t *testing.T) {
	// A proxy address where nothing listens: take a free port and close it.
	ts := httptest.NewServer(http.NotFoundHandler())
	dead, _ := url.Parse(ts.URL)
	ts.Close()
	c := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(dead)}}
	t.Cleanup(c.CloseIdleConnections)
	base, tc := newTestServer(t, Config{Client: c})

	resp, body := get(t, tc, http.MethodGet, base+"/call/backend/", nil)
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status = %d, want 502; body %s", resp.StatusCode, body)
	}
	if e := decode[errorBody](t, body); !strings.Contains(e.Error, "backend") {
		t.Errorf("error %q should name the target", e.Error)
	}
}

func TestCallTimesOut(t *testing.T) {
	release := make(chan struct{})
	proxy := newForwardProxy(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release) // runs before the proxy's Cleanup Close
	base, c := newTestServer(t, Config{Client: proxy.clientVia(t), CallTimeout: 100 * time.Millisecond})

	start := time.Now()
	resp, body := get(t, c, http.MethodGet, base+"/call/slow.svc/", nil)
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status = %d, want 502; body %s", resp.StatusCode, body)
	}
	if e := decode[errorBody](t, body); !strings.Contains(e.Error, "timed out") {
		t.Errorf("error %q should say the call timed out", e.Error)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("call took %s with a 100ms time-out", d)
	}
}

func TestCallBoundsTheBody(t *testing.T) {
	proxy := newForwardProxy(t, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(strings.Repeat("z", MaxCallBody+10)))
	})
	base, c := newTestServer(t, Config{Client: proxy.clientVia(t)})
	resp, body := get(t, c, http.MethodGet, base+"/call/big/", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d, want 200", resp.StatusCode)
	}
	res := decode[CallResult](t, body)
	if len(res.Body) != MaxCallBody || !res.Truncated || res.Status != 200 {
		t.Errorf("body of %d bytes, truncated %v, status %d; want %d, true, 200",
			len(res.Body), res.Truncated, res.Status, MaxCallBody)
	}
}

func TestCallDoesNotFollowRedirects(t *testing.T) {
	proxy := newForwardProxy(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://elsewhere/", http.StatusFound)
	})
	u, _ := url.Parse(proxy.URL)
	c := defaultClient()
	c.Transport.(*http.Transport).Proxy = http.ProxyURL(u)
	t.Cleanup(c.CloseIdleConnections)
	base, tc := newTestServer(t, Config{Client: c})
	_, body := get(t, tc, http.MethodGet, base+"/call/backend/", nil)
	if res := decode[CallResult](t, body); res.Status != http.StatusFound {
		t.Errorf("upstream status = %d, want the 302 as it came", res.Status)
	}
	if n := len(proxy.requests()); n != 1 {
		t.Errorf("proxy saw %d requests, want 1", n)
	}
}

// TestDefaultClientUsesHTTPProxy checks the wiring `zmesh up` relies on: a
// Server without a Client sends calls to the proxy HTTP_PROXY names. It
// is the only test in the package that lets the environment decide, since
// net/http reads the proxy variables once per process.
func TestDefaultClientUsesHTTPProxy(t *testing.T) {
	proxy := newForwardProxy(t, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("via proxy"))
	})
	t.Setenv("HTTP_PROXY", proxy.URL)
	t.Setenv("http_proxy", proxy.URL)
	t.Setenv("NO_PROXY", "")
	t.Setenv("no_proxy", "")
	base, c := newTestServer(t, Config{})
	_, body := get(t, c, http.MethodGet, base+"/call/backend.api.svc.cluster.local/x", nil)
	if res := decode[CallResult](t, body); res.Body != "via proxy" {
		t.Errorf("result = %+v, want the proxy's answer", res)
	}
	if reqs := proxy.requests(); len(reqs) != 1 || reqs[0].RequestURI != "http://backend.api.svc.cluster.local/x" {
		t.Errorf("proxy saw %d requests, want 1 for http://backend.api.svc.cluster.local/x", len(reqs))
	}
}

func FuzzCallTarget(f *testing.F) {
	for _, s := range []string{"/call/backend/", "/call/a:1/b?c", "/call/[::1]:80/x", "/call/u@h/", "/call//", "/call/h%2F/"} {
		f.Add(s, "q=1")
	}
	f.Fuzz(func(t *testing.T, path, query string) {
		target, err := callTarget(path, query)
		if err != nil {
			return
		}
		u, err := url.Parse(target)
		if err != nil {
			t.Fatalf("callTarget(%q, %q) = %q, which does not parse: %v", path, query, target, err)
		}
		host, _, _ := strings.Cut(strings.TrimPrefix(path, "/call/"), "/")
		if u.Scheme != "http" || u.Host != host || u.User != nil {
			t.Fatalf("callTarget(%q, %q) = %q: scheme %q host %q; want http and host %q",
				path, query, target, u.Scheme, u.Host, host)
		}
	})
}
