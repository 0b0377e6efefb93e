package proxy

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"

	"github.com/zmesh/zmesh/internal/xds"
)

// seenCheck is what an HTTP authorizer received.
type seenCheck struct {
	method, uri, host string
	header            http.Header
	body              string
}

// httpAuthorizer is an ext_authz HTTP service on loopback. It decides on
// the last segment of the path it is asked about:
//
//   - allow: 200, with X-User, X-Auth-Role and X-Other headers, and
//     X-Envoy-Auth-Headers-To-Remove naming x-remove-me;
//   - deny: 401 with a body, WWW-Authenticate, X-Deny-Reason, two
//     Set-Cookie and an X-Secret header;
//   - redirect: 302 to a login page;
//   - fail: 500 with a body;
//   - slow: 200 after two seconds (or when the caller gives up);
//   - anything else: 403.
type httpAuthorizer struct {
	srv  *httptest.Server
	mu   sync.Mutex
	seen []seenCheck
}

func startHTTPAuthorizer(t *testing.T) *httpAuthorizer {
	t.Helper()
	a := &httpAuthorizer{}
	a.srv = httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *httpAuthorizer) serve(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	a.mu.Lock()
	a.seen = append(a.seen, seenCheck{method: r.Method, uri: r.RequestURI, host: r.Host, header: r.Header.Clone(), body: string(b)})
	a.mu.Unlock()
	h := w.Header()
	switch path.Base(r.URL.Path) {
	case "allow":
		h.Set("X-User", "alice")
		h.Set("X-Auth-Role", "admin")
		h.Set("X-Other", "not for the app")
		h.Set("X-Envoy-Auth-Headers-To-Remove", "x-remove-me, x-remove-too")
		io.WriteString(w, "ok")
	case "deny":
		h.Set("WWW-Authenticate", `Bearer realm="zmesh"`)
		h.Set("X-Deny-Reason", "bad-token")
		h.Add("Set-Cookie", "a=1")
		h.Add("Set-Cookie", "b=2")
		h.Set("X-Secret", "internal detail")
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, "no entry")
	case "redirect":
		h.Set("Location", "https://login.example/start")
		w.WriteHeader(http.StatusFound)
	case "fail":
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, "authorizer stack trace")
	case "slow":
		select {
		case <-time.After(2 * time.Second):
		case <-r.Context().Done():
		}
	default:
		w.WriteHeader(http.StatusForbidden)
	}
}

func (a *httpAuthorizer) addr() string { return a.srv.Listener.Addr().String() }

func (a *httpAuthorizer) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.seen)
}

func (a *httpAuthorizer) last(t *testing.T) seenCheck {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.seen) == 0 {
		t.Fatal("the authorizer was not asked")
	}
	return a.seen[len(a.seen)-1]
}

// httpProviderFor returns an envoyExtAuthzHttp provider for service
// (host:port, or a mesh hostname with port), changed by opts.
func httpProviderFor(name, service string, port uint32, opts ...func(*meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationHttpProvider)) *meshv1alpha1.MeshConfig_ExtensionProvider {
	h := &meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationHttpProvider{Service: service, Port: port}
	for _, o := range opts {
		o(h)
	}
	return &meshv1alpha1.MeshConfig_ExtensionProvider{
		Name:     name,
		Provider: &meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyExtAuthzHttp{EnvoyExtAuthzHttp: h},
	}
}

type httpOpt = func(*meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationHttpProvider)

func withTimeout(d time.Duration) httpOpt {
	return func(h *meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationHttpProvider) {
		h.Timeout = durationpb.New(d)
	}
}

func withFailOpen(h *meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationHttpProvider) {
	h.FailOpen = true
}

func withStatusOnError(s string) httpOpt {
	return func(h *meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationHttpProvider) {
		h.StatusOnError = s
	}
}

// fullHTTPProvider sets every header field the tests look at.
func fullHTTPProvider(h *meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationHttpProvider) {
	h.PathPrefix = "/check"
	h.IncludeRequestHeadersInCheck = []string{"x-include-me", "X-Prefix-*"}
	h.IncludeAdditionalHeadersInCheck = map[string]string{"x-added": "fixed-value", "x-include-me": "overridden"}
	h.HeadersToUpstreamOnAllow = []string{"x-user", "x-auth-*"}
	h.HeadersToDownstreamOnDeny = []string{"x-deny-*", "set-cookie"}
	h.HeadersToDownstreamOnAllow = []string{"x-user"}
}

// headerBodyApp is an app that answers with the headers, path and body
// size it received.
func headerBodyApp(t testing.TB) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		for k, vs := range r.Header {
			fmt.Fprintf(w, "%s: %s\n", k, strings.Join(vs, ","))
		}
		fmt.Fprintf(w, "path=%s\nbody=%d\n", r.URL.RequestURI(), n)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func splitPort(t *testing.T, addr string) (string, uint32) {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		t.Fatal(err)
	}
	return host, uint32(n)
}

// do sends method to url through c with the headers in hdr.
func do(t *testing.T, c *http.Client, method, url, body string, hdr http.Header) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// useProvider makes the server's CUSTOM policy name provider.
func useProvider(t *testing.T, p *pair, m xds.Mesh, provider string) {
	t.Helper()
	mustApply(t, p.server, &xds.View{Version: "s-" + provider, Mesh: m,
		PeerAuthentications: parse(t, permissiveMesh), AuthorizationPolicies: parse(t, customPolicy(provider))})
}

func TestCustomExtAuthzHTTP(t *testing.T) {
	a := startHTTPAuthorizer(t)
	host, port := splitPort(t, a.addr())
	m := mesh()
	m.ExtensionProviders = []*meshv1alpha1.MeshConfig_ExtensionProvider{
		httpProviderFor("http", host, port, fullHTTPProvider, withTimeout(200*time.Millisecond)),
		httpProviderFor("http-open", host, port, withFailOpen, withTimeout(200*time.Millisecond)),
		httpProviderFor("http-503", host, port, withStatusOnError("503")),
		httpProviderFor("http-legacy", host, port, func(h *meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationHttpProvider) {
			h.IncludeHeadersInCheck = []string{"x-legacy"}
		}),
		httpProviderFor("dead", closedAddr(t), 0),
		httpProviderFor("dead-open", closedAddr(t), 0, withFailOpen),
		httpProviderFor("dead-503", closedAddr(t), 0, withStatusOnError("503")),
	}
	p := newPairWith(t, m, permissiveMesh+"---\n"+customPolicy("http"), headerBodyApp(t))
	url := "http://backend.api.svc.cluster.local"
	noRedirects := *p.http
	noRedirects.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	t.Run("allowed: the listed answer headers replace the client's on the way to the app", func(t *testing.T) {
		code, hdr, body := do(t, p.http, "GET", url+"/ext/allow?q=1", "", http.Header{
			"X-User": {"mallory"}, "X-Remove-Me": {"1"}, "X-Remove-Too": {"1"}, "X-Kept": {"1"},
		})
		if code != 200 {
			t.Fatalf("got %d %q", code, body)
		}
		// headersToDownstreamOnAllow: the listed answer header reaches
		// the client with the app's response; the others do not.
		if hdr.Get("X-User") != "alice" || hdr.Get("X-Other") != "" || hdr.Get("X-Auth-Role") != "" {
			t.Errorf("client got X-User %q, X-Other %q, X-Auth-Role %q; want alice and nothing else",
				hdr.Get("X-User"), hdr.Get("X-Other"), hdr.Get("X-Auth-Role"))
		}
		for _, want := range []string{"X-User: alice\n", "X-Auth-Role: admin\n", "X-Kept: 1\n", "path=/ext/allow?q=1\n"} {
			if !strings.Contains(body, want) {
				t.Errorf("the app did not get %q:\n%s", want, body)
			}
		}
		for _, unwanted := range []string{"mallory", "X-Other", "X-Remove-Me", "X-Remove-Too", "X-Envoy-Auth"} {
			if strings.Contains(body, unwanted) {
				t.Errorf("the app got %q:\n%s", unwanted, body)
			}
		}
	})

	t.Run("the authorizer sees the prefixed path, the default headers and only the listed ones", func(t *testing.T) {
		code, _, body := do(t, p.http, "GET", url+"/ext/allow?q=1&r=a%2Fb", "", http.Header{
			"Authorization": {"Bearer t0ken"},
			"Cookie":        {"session=secret"},
			"X-Include-Me":  {"from-client"},
			"X-Prefix-Foo":  {"1"},
			"x-prefix-bar":  {"2"},
			"X-Unlisted":    {"1"},
		})
		if code != 200 {
			t.Fatalf("got %d %q", code, body)
		}
		got := a.last(t)
		if got.method != "GET" || got.uri != "/check/ext/allow?q=1&r=a%2Fb" || got.host != "backend.api.svc.cluster.local" {
			t.Errorf("check request %s %s Host %s", got.method, got.uri, got.host)
		}
		want := http.Header{
			"Authorization": {"Bearer t0ken"},
			"X-Include-Me":  {"overridden"}, // includeAdditionalHeadersInCheck wins
			"X-Prefix-Foo":  {"1"},
			"X-Prefix-Bar":  {"2"},
			"X-Added":       {"fixed-value"},
		}
		for k, v := range want {
			if g := got.header.Values(k); strings.Join(g, ",") != strings.Join(v, ",") {
				t.Errorf("%s: got %q, want %q", k, g, v)
			}
		}
		// Nothing else: not the unlisted Cookie, not the XFCC the proxy
		// set, not Go's User-Agent or Accept-Encoding.
		for k := range got.header {
			if _, ok := want[k]; !ok {
				t.Errorf("the authorizer got unlisted header %s: %q", k, got.header[k])
			}
		}
	})

	t.Run("the method is the client's, the body is not sent, the app gets it whole", func(t *testing.T) {
		code, _, body := do(t, p.http, "POST", url+"/ext/allow", "twelve bytes", nil)
		if code != 200 || !strings.Contains(body, "body=12\n") {
			t.Fatalf("got %d %q", code, body)
		}
		if got := a.last(t); got.method != "POST" || got.body != "" || got.header.Get("X-Envoy-Auth-Partial-Body") != "" {
			t.Errorf("check request %s with body %q, headers %v", got.method, got.body, got.header)
		}
	})

	t.Run("denied: the authorizer's status, body and listed headers reach the client", func(t *testing.T) {
		n := a.count()
		code, h, body := do(t, p.http, "GET", url+"/ext/deny", "", nil)
		if code != 401 || body != "no entry" {
			t.Fatalf("got %d %q", code, body)
		}
		if h.Get("X-Deny-Reason") != "bad-token" || strings.Join(h.Values("Set-Cookie"), ";") != "a=1;b=2" {
			t.Errorf("listed headers missing: %v", h)
		}
		if h.Get("Www-Authenticate") != `Bearer realm="zmesh"` {
			t.Errorf("WWW-Authenticate, always passed on with a list, missing: %v", h)
		}
		if h.Get("X-Secret") != "" {
			t.Errorf("an unlisted header reached the client: %v", h)
		}
		if a.count() != n+1 {
			t.Errorf("the authorizer was asked %d times, want once", a.count()-n)
		}
	})

	t.Run("a redirect is passed to the client, not followed", func(t *testing.T) {
		code, h, body := do(t, &noRedirects, "GET", url+"/ext/redirect", "", nil)
		if code != 302 || h.Get("Location") != "https://login.example/start" {
			t.Fatalf("got %d %v %q", code, h, body)
		}
	})

	t.Run("paths the CUSTOM policy does not match skip the authorizer", func(t *testing.T) {
		n := a.count()
		if code, _, body := do(t, p.http, "GET", url+"/other/deny", "", nil); code != 200 {
			t.Fatalf("got %d %q", code, body)
		}
		if a.count() != n {
			t.Error("the authorizer was asked about a request no CUSTOM policy matches")
		}
	})

	t.Run("a 5xx from the authorizer is an error: statusOnError, not its answer", func(t *testing.T) {
		code, _, body := do(t, p.http, "GET", url+"/ext/fail", "", nil)
		if code != 403 || strings.Contains(body, "stack trace") {
			t.Fatalf("got %d %q", code, body)
		}
	})

	t.Run("an authorizer slower than its timeout denies", func(t *testing.T) {
		start := time.Now()
		if code, _, body := do(t, p.http, "GET", url+"/ext/slow", "", nil); code != 403 {
			t.Fatalf("got %d %q", code, body)
		}
		if d := time.Since(start); d > 1500*time.Millisecond {
			t.Errorf("took %s; the timeout is 200ms and the authorizer answers after 2s", d)
		}
	})

	for _, tc := range []struct {
		name, provider, path string
		want                 int
	}{
		{"failOpen lets a 5xx through", "http-open", "/ext/fail", 200},
		{"failOpen lets a time-out through", "http-open", "/ext/slow", 200},
		{"failOpen does not turn a denial into an allow", "http-open", "/ext/deny", 401},
		{"statusOnError answers a 5xx", "http-503", "/ext/fail", 503},
		{"unreachable: fail closed", "dead", "/ext/allow", 403},
		{"unreachable, failOpen: allowed", "dead-open", "/ext/allow", 200},
		{"unreachable, statusOnError", "dead-503", "/ext/allow", 503},
	} {
		t.Run(tc.name, func(t *testing.T) {
			useProvider(t, p, m, tc.provider)
			if code, _, body := do(t, p.http, "GET", url+tc.path, "", nil); code != tc.want {
				t.Fatalf("got %d %q, want %d", code, body, tc.want)
			}
		})
	}

	t.Run("includeHeadersInCheck, the deprecated name, still selects headers", func(t *testing.T) {
		useProvider(t, p, m, "http-legacy")
		code, _, body := do(t, p.http, "GET", url+"/ext/allow", "", http.Header{"X-Legacy": {"1"}, "X-Include-Me": {"1"}})
		if code != 200 {
			t.Fatalf("got %d %q", code, body)
		}
		if h := a.last(t).header; h.Get("X-Legacy") != "1" || h.Get("X-Include-Me") != "" {
			t.Errorf("authorizer got %v", h)
		}
	})
}

func TestCustomExtAuthzHTTPBody(t *testing.T) {
	a := startHTTPAuthorizer(t)
	host, port := splitPort(t, a.addr())
	withBody := func(partial bool) httpOpt {
		return func(h *meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationHttpProvider) {
			h.IncludeRequestBodyInCheck = &meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationRequestBody{
				MaxRequestBytes: 8, AllowPartialMessage: partial,
			}
		}
	}
	m := mesh()
	m.ExtensionProviders = []*meshv1alpha1.MeshConfig_ExtensionProvider{
		httpProviderFor("whole", host, port, withBody(false), withFailOpen),
		httpProviderFor("partial", host, port, withBody(true)),
	}
	p := newPairWith(t, m, permissiveMesh+"---\n"+customPolicy("whole"), headerBodyApp(t))
	url := "http://backend.api.svc.cluster.local/ext/allow"
	long := strings.Repeat("x", 20)

	t.Run("a body within maxRequestBytes is sent whole", func(t *testing.T) {
		code, _, body := do(t, p.http, "POST", url, "hello", nil)
		if code != 200 || !strings.Contains(body, "body=5\n") {
			t.Fatalf("got %d %q", code, body)
		}
		if got := a.last(t); got.body != "hello" || got.header.Get("X-Envoy-Auth-Partial-Body") != "false" {
			t.Errorf("authorizer got body %q, partial %q", got.body, got.header.Get("X-Envoy-Auth-Partial-Body"))
		}
	})
	t.Run("a longer body is refused with 413 before asking, even failOpen", func(t *testing.T) {
		n := a.count()
		if code, _, body := do(t, p.http, "POST", url, long, nil); code != 413 {
			t.Fatalf("got %d %q", code, body)
		}
		if a.count() != n {
			t.Error("the authorizer was asked")
		}
	})
	t.Run("allowPartialMessage: the first maxRequestBytes are sent, the app gets all", func(t *testing.T) {
		useProvider(t, p, m, "partial")
		code, _, body := do(t, p.http, "POST", url, long, nil)
		if code != 200 || !strings.Contains(body, "body=20\n") {
			t.Fatalf("got %d %q", code, body)
		}
		if got := a.last(t); got.body != long[:8] || got.header.Get("X-Envoy-Auth-Partial-Body") != "true" {
			t.Errorf("authorizer got body %q, partial %q", got.body, got.header.Get("X-Envoy-Auth-Partial-Body"))
		}
	})
}

// TestCustomExtAuthzHTTPThroughSidecar: an HTTP authorizer whose workload
// has a proxy is called over mutual TLS with secure naming, and its proxy
// passes the check on to it.
func TestCustomExtAuthzHTTPThroughSidecar(t *testing.T) {
	a := startHTTPAuthorizer(t)
	m := mesh()
	m.ExtensionProviders = []*meshv1alpha1.MeshConfig_ExtensionProvider{
		httpProviderFor("http", "ext-authz.authz.svc.cluster.local", 8000, fullHTTPProvider),
	}
	p := newPairWith(t, m, customPolicy("http"), headerBodyApp(t))
	authzProxy := startProxyAt(t, p.ca, "authz", "ext-authz", a.addr(), testLogger(t))
	mustApply(t, authzProxy, &xds.View{Version: "a1", Mesh: mesh(), PeerAuthentications: parse(t, strictMesh)})
	nv := *p.server.state.Load().view
	nv.Version = "s2"
	nv.Services = append(nv.Services, serviceOf(authzProxy))
	mustApply(t, p.server, &nv)
	url := "http://backend.api.svc.cluster.local"

	if code, _, body := do(t, p.http, "GET", url+"/ext/allow", "", nil); code != 200 || !strings.Contains(body, "X-User: alice\n") {
		t.Fatalf("got %d %q", code, body)
	}
	if got := a.last(t); got.uri != "/check/ext/allow" {
		t.Errorf("check request %s", got.uri)
	}
	if code, _, body := do(t, p.http, "GET", url+"/ext/deny", "", nil); code != 401 || body != "no entry" {
		t.Fatalf("got %d %q", code, body)
	}
	if got := counter(t, authzProxy, "istio_requests_total", `source_principal="spiffe://cluster.local/ns/api/sa/backend"`); got != 2 {
		t.Errorf("the authorizer's proxy served %v checks from backend, want 2", got)
	}
}
