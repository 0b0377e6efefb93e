package client

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"

	"github.com/zmesh/zmesh/internal/authz"
	"github.com/zmesh/zmesh/internal/extauthz"
)

// httpCheck is a check request an HTTP authorizer got.
type httpCheck struct {
	method, uri, host string
	header            http.Header
	body              string
}

// startHTTPAuthorizer serves answer on loopback and returns its address
// and the checks it got.
func startHTTPAuthorizer(t *testing.T, answer http.HandlerFunc) (string, func() []httpCheck) {
	t.Helper()
	var mu sync.Mutex
	var got []httpCheck
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, httpCheck{r.Method, r.RequestURI, r.Host, r.Header.Clone(), string(b)})
		mu.Unlock()
		answer(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String(), func() []httpCheck {
		mu.Lock()
		defer mu.Unlock()
		return append([]httpCheck(nil), got...)
	}
}

// httpMesh compiles an envoyExtAuthzHttp provider "http" for addr,
// changed by set, as the proxy gets it from a push.
func httpMesh(t *testing.T, addr string, set func(*meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationHttpProvider)) Mesh {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(port)
	h := &meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationHttpProvider{
		Service: host, Port: uint32(n), Timeout: durationpb.New(200 * time.Millisecond), StatusOnError: "503",
	}
	if set != nil {
		set(h)
	}
	provs, _, err := extauthz.Compile([]*meshv1alpha1.MeshConfig_ExtensionProvider{{
		Name: "http", Provider: &meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyExtAuthzHttp{EnvoyExtAuthzHttp: h},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return Mesh{Providers: provs}
}

// TestCheckHTTP: an HTTP authorizer's answer, as Envoy reads it: 200
// allows with the listed headers, another status below 500 denies with
// the authorizer's reply, a 5xx or no answer in time is a failure that
// statusOnError or failOpen settles.
func TestCheckHTTP(t *testing.T) {
	lists := func(h *meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationHttpProvider) {
		h.HeadersToUpstreamOnAllow = []string{"x-user", "x-auth-*"}
		h.HeadersToDownstreamOnAllow = []string{"x-user"}
		h.HeadersToDownstreamOnDeny = []string{"x-deny-*", "set-cookie"}
	}
	for _, tc := range []struct {
		name     string
		answer   http.HandlerFunc
		failOpen bool
		want     Answer
		failed   bool // whether want has an Err
	}{
		{
			name: "200 allows: the listed headers for the app and the client, the ones to remove",
			answer: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("X-User", "alice")
				w.Header().Set("X-Auth-Role", "admin")
				w.Header().Set("X-Other", "unlisted")
				w.Header().Set("X-Envoy-Auth-Headers-To-Remove", "x-remove-me, x-remove-too")
			},
			want: Answer{Verdict: authz.CustomAllow,
				Set:     []*corev3.HeaderValueOption{header("X-Auth-Role", "admin"), header("X-User", "alice")},
				Respond: []*corev3.HeaderValueOption{header("X-User", "alice")},
				Remove:  []string{"x-remove-me", "x-remove-too"}},
		},
		{
			name: "401 denies with the body and the listed headers, WWW-Authenticate always",
			answer: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Www-Authenticate", "Bearer")
				w.Header().Set("X-Deny-Reason", "token")
				w.Header().Set("X-Secret", "unlisted")
				w.WriteHeader(http.StatusUnauthorized)
				io.WriteString(w, "no entry")
			},
			want: Answer{Verdict: authz.CustomDeny, Status: 401, Body: "no entry",
				Headers: []*corev3.HeaderValueOption{header("Www-Authenticate", "Bearer"), header("X-Deny-Reason", "token")}},
		},
		{
			name: "a redirect is an answer to pass on, not followed",
			answer: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Location", "https://login.example/")
				w.WriteHeader(http.StatusFound)
			},
			want: Answer{Verdict: authz.CustomDeny, Status: 302,
				Headers: []*corev3.HeaderValueOption{header("Location", "https://login.example/")}},
		},
		{
			name: "a 5xx is a failure: statusOnError, not the authorizer's reply",
			answer: func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusInternalServerError)
				io.WriteString(w, "stack trace")
			},
			want: Answer{Verdict: authz.CustomDeny, Status: 503}, failed: true,
		},
		{
			name: "a 5xx with failOpen allows",
			answer: func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusBadGateway)
			},
			failOpen: true,
			want:     Answer{Verdict: authz.CustomAllow}, failed: true,
		},
		{
			name: "an authorizer slower than its timeout is a failure",
			answer: func(w http.ResponseWriter, r *http.Request) {
				select {
				case <-r.Context().Done():
				case <-time.After(5 * time.Second):
				}
			},
			want: Answer{Verdict: authz.CustomDeny, Status: 503}, failed: true,
		},
		{
			name: "an answer larger than the bound is a failure",
			answer: func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusForbidden)
				w.Write(make([]byte, maxResponse+1))
			},
			want: Answer{Verdict: authz.CustomDeny, Status: 503}, failed: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, _ := startHTTPAuthorizer(t, tc.answer)
			m := httpMesh(t, addr, func(h *meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationHttpProvider) {
				lists(h)
				h.FailOpen = tc.failOpen
			})
			c := newClient(t, Config{})
			r := httptest.NewRequest("GET", "http://backend.api/x", nil)
			got := c.Check(context.Background(), m, "http", Request{HTTP: r, Path: "/x", Peer: testPeer})
			if (got.Err != nil) != tc.failed {
				t.Fatalf("err %v, want one: %v", got.Err, tc.failed)
			}
			got.Err = nil
			sortOptions(got.Set)
			sortOptions(got.Headers)
			if !sameAnswer(got, tc.want) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// sortOptions orders header options by name, as a test can expect them
// (they come from a map).
func sortOptions(opts []*corev3.HeaderValueOption) {
	slices.SortStableFunc(opts, func(a, b *corev3.HeaderValueOption) int {
		return strings.Compare(a.GetHeader().GetKey(), b.GetHeader().GetKey())
	})
}

// TestHTTPCheckRequest: the authorizer gets the client's method,
// pathPrefix + the normalized path and the query, the client's Host and
// Authorization, the listed headers, the fixed ones (which win), no body
// (Content-Length 0) and nothing Go would add; the connection's own
// headers never cross.
func TestHTTPCheckRequest(t *testing.T) {
	addr, checks := startHTTPAuthorizer(t, func(http.ResponseWriter, *http.Request) {})
	m := httpMesh(t, addr, func(h *meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationHttpProvider) {
		h.PathPrefix = "/check"
		h.IncludeRequestHeadersInCheck = []string{"x-include-me", "X-Prefix-*", "connection"}
		h.IncludeAdditionalHeadersInCheck = map[string]string{"x-added": "fixed", "x-include-me": "overridden"}
	})
	c := newClient(t, Config{})
	r := httptest.NewRequest("POST", "http://backend.api/a/./b?q=1", strings.NewReader("not sent"))
	r.Header = http.Header{
		"Authorization": {"Bearer t0ken"},
		"Cookie":        {"session=secret"},
		"X-Include-Me":  {"from-client"},
		"X-Prefix-Foo":  {"1"},
		"Connection":    {"x-prefix-foo"},
	}
	if got := c.Check(context.Background(), m, "http", Request{HTTP: r, Path: "/a/b", Peer: testPeer}); got.Verdict != authz.CustomAllow {
		t.Fatalf("got %+v", got)
	}
	got := checks()[0]
	if got.method != "POST" || got.uri != "/check/a/b?q=1" || got.host != "backend.api" || got.body != "" {
		t.Errorf("check request %s %s Host %s body %q", got.method, got.uri, got.host, got.body)
	}
	want := http.Header{
		"Authorization":  {"Bearer t0ken"},
		"X-Include-Me":   {"overridden"},
		"X-Prefix-Foo":   {"1"},
		"X-Added":        {"fixed"},
		"Content-Length": {"0"},
	}
	for k, v := range want {
		if g := got.header.Values(k); strings.Join(g, ",") != strings.Join(v, ",") {
			t.Errorf("%s: got %q, want %q", k, g, v)
		}
	}
	for k := range got.header {
		if _, ok := want[k]; !ok {
			t.Errorf("the authorizer got unlisted header %s: %q", k, got.header[k])
		}
	}
}

// TestHTTPCheckBody: includeRequestBodyInCheck sends up to
// maxRequestBytes and says whether the body was cut; a longer body is
// refused with 413 before asking, whatever failOpen says, unless partial
// messages are allowed. The request keeps its whole body.
func TestHTTPCheckBody(t *testing.T) {
	addr, checks := startHTTPAuthorizer(t, func(http.ResponseWriter, *http.Request) {})
	body := func(partial bool) func(*meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationHttpProvider) {
		return func(h *meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationHttpProvider) {
			h.FailOpen = true
			h.IncludeRequestBodyInCheck = &meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationRequestBody{
				MaxRequestBytes: 8, AllowPartialMessage: partial,
			}
		}
	}
	c := newClient(t, Config{})
	for _, tc := range []struct {
		name, body string
		partial    bool
		status     int    // 0: allowed
		sent       string // what the authorizer got
		cut        string // its X-Envoy-Auth-Partial-Body
	}{
		{name: "within the bound: whole", body: "hello", sent: "hello", cut: "false"},
		{name: "beyond the bound: 413 without asking", body: strings.Repeat("x", 20), status: 413},
		{name: "beyond the bound, partial: the start", body: strings.Repeat("x", 20), partial: true, sent: "xxxxxxxx", cut: "true"},
		{name: "no body: nothing", body: "", sent: "", cut: "false"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := len(checks())
			r := httptest.NewRequest("POST", "http://backend.api/x", strings.NewReader(tc.body))
			got := c.Check(context.Background(), httpMesh(t, addr, body(tc.partial)), "http", Request{HTTP: r, Path: "/x", Peer: testPeer})
			if tc.status != 0 {
				if got.Verdict != authz.CustomDeny || got.Status != tc.status || len(checks()) != n {
					t.Fatalf("got %+v after %d checks", got, len(checks())-n)
				}
				return
			}
			if got.Verdict != authz.CustomAllow {
				t.Fatalf("got %+v", got)
			}
			seen := checks()[n]
			if seen.body != tc.sent || seen.header.Get(headerPartialBody) != tc.cut {
				t.Errorf("authorizer got %q, partial %q", seen.body, seen.header.Get(headerPartialBody))
			}
			if rest, _ := io.ReadAll(r.Body); string(rest) != tc.body {
				t.Errorf("the request's body is now %q", rest)
			}
		})
	}
}

// TestHTTPCheckRequestPath: the check request carries pathPrefix + the
// normalized path byte for byte; a path that does not unescape is refused
// (errCheckPath, answered 400 whatever failOpen says) instead of being
// sent re-escaped, a path other than the one the app would get.
func TestHTTPCheckRequestPath(t *testing.T) {
	hp := &extauthz.HTTPProvider{PathPrefix: "/check"}
	r := httptest.NewRequest("GET", "http://backend.api/x?q=1", nil)
	for _, tc := range []struct {
		path, want string
	}{
		{"/a/b", "/check/a/b?q=1"},
		{"/a%2Fb%25", "/check/a%2Fb%25?q=1"},
		{"/caf%C3%A9", "/check/caf%C3%A9?q=1"},
		{"/a%zz", ""},
		{"/a%2", ""},
	} {
		req, err := httpRequest(hp, context.Background(), r, "127.0.0.1:1", false, tc.path, nil, false)
		if tc.want == "" {
			if !errors.Is(err, errCheckPath) {
				t.Errorf("path %q: got %v, want errCheckPath", tc.path, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("path %q: %v", tc.path, err)
		}
		if got := req.URL.RequestURI(); got != tc.want {
			t.Errorf("path %q: check request for %q, want %q", tc.path, got, tc.want)
		}
	}
}
