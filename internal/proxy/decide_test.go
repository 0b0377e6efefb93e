package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zmesh/zmesh/internal/authz"
	"github.com/zmesh/zmesh/internal/meshtest"
	"github.com/zmesh/zmesh/internal/xds"
)

const denyAdmin = `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: api}
spec:
  action: DENY
  rules:
  - to:
    - operation: {paths: ["/admin*"]}
`

// TestMeshPathNormalization: path tricks against `DENY paths: ["/admin*"]`
// under each pathNormalization, through the inbound listener, with the
// decision Istio takes for each (403 denied, 200 allowed because the path
// is not /admin in that mode's reading, 400 rejected before any policy),
// and, when allowed, the app gets the path the policy saw. NONE forwards
// paths as received (Istio documents it as vulnerable), but still rejects
// %00 and malformed escapes.
func TestMeshPathNormalization(t *testing.T) {
	modes := []string{"NONE", "BASE", "MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES"}
	tests := []struct {
		path string
		want [4]int // per mode, in the order of modes
		why  string
	}{
		{"/admin", [4]int{403, 403, 403, 403}, "the path itself"},
		{"/admin?x=1", [4]int{403, 403, 403, 403}, "the query is not the path"},
		{"//admin", [4]int{200, 200, 403, 403}, "BASE keeps //, MERGE_SLASHES merges it"},
		{"/./admin", [4]int{200, 403, 403, 403}, "dot segments resolve from BASE on"},
		{"/x/../admin", [4]int{200, 403, 403, 403}, ""},
		{"/x/%2e%2e/admin", [4]int{200, 403, 403, 403}, "encoded dots are dots"},
		{"/x/.%2E/admin", [4]int{200, 403, 403, 403}, "mixed encoded dots"},
		{"/%61dmin", [4]int{200, 403, 403, 403}, "encoded unreserved characters decode"},
		{"/%2561dmin", [4]int{200, 200, 200, 200}, "decoding happens once"},
		{"/%2Fadmin", [4]int{200, 200, 200, 403}, "%2F is data unless DECODE_AND_MERGE_SLASHES"},
		{"/x/..%2Fadmin", [4]int{200, 200, 200, 403}, ""},
		{"/%5Cadmin", [4]int{200, 200, 200, 403}, "%5C likewise"},
		{"/\\admin", [4]int{200, 200, 403, 403}, "a backslash is a slash from BASE on, merged from MERGE_SLASHES on"},
		{"/x\\..\\admin", [4]int{200, 403, 403, 403}, ""},
		{"/Admin", [4]int{200, 200, 200, 200}, "paths are case-sensitive, as in Istio"},
		{"/ADMIN", [4]int{200, 200, 200, 200}, ""},
		{"/admin;x=1", [4]int{403, 403, 403, 403}, "a ;parameter does not hide a prefix"},
		{"/;/admin", [4]int{200, 200, 200, 200}, "\";\" is an ordinary segment to Istio, whatever a servlet container makes of it"},
		{"/admin%00", [4]int{400, 400, 400, 400}, "%00 is always rejected"},
		{"/x%00/../admin", [4]int{400, 400, 400, 400}, ""},
		{"/admin%2", [4]int{400, 400, 400, 400}, "a truncated escape is always rejected"},
		{"/admin%zz", [4]int{400, 400, 400, 400}, "a malformed escape is always rejected"},
	}
	noLeaks(t)
	ca := meshtest.NewCA(t, testTD)
	var seen atomic.Pointer[string]
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.EscapedPath()
		seen.Store(&p)
	}))
	t.Cleanup(app.Close)
	server := startProxyAt(t, ca, "api", "backend", app.Listener.Addr().String(), testLogger(t))
	cert := ca.Issue(t, "web", "frontend", time.Hour)
	for i, mode := range modes {
		m := mesh()
		m.PathNormalization = mode
		mustApply(t, server, &xds.View{Version: mode, Mesh: m, AuthorizationPolicies: parse(t, denyAdmin)})
		n, err := authz.ParsePathNormalization(mode)
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range tests {
			t.Run(mode+" "+tc.path, func(t *testing.T) {
				seen.Store(nil)
				// The request line is written by hand: net/http's client
				// would read "//admin" as an authority and clean the rest.
				conn, err := tls.Dial("tcp", server.InboundAddr().String(), &tls.Config{
					Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS13, NextProtos: []string{"http/1.1"},
				})
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: backend.api\r\nConnection: close\r\n\r\n", tc.path)
				resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != tc.want[i] {
					t.Fatalf("status %d, want %d (%s)", resp.StatusCode, tc.want[i], tc.why)
				}
				got := seen.Load()
				if tc.want[i] != 200 {
					if got != nil {
						t.Errorf("the app was reached with %q", *got)
					}
					return
				}
				norm, err := authz.NormalizePath(tc.path, n)
				if err != nil {
					t.Fatal(err)
				}
				// As net/http writes it: a backslash goes out as %5C.
				dec, _ := url.PathUnescape(norm)
				want := (&url.URL{Path: dec, RawPath: norm}).EscapedPath()
				if got == nil || *got != want {
					t.Errorf("the app got %q, want the path the policy matched, %q", deref(got), want)
				}
			})
		}
	}
}

func deref(p *string) string {
	if p == nil {
		return "(nothing)"
	}
	return *p
}

// TestInboundRejectsPathsItsServerWouldNot: the inbound's own check, not
// net/http's request parsing, refuses a path that cannot be normalized
// safely, under every normalization: the handler is called here with
// request targets net/http's HTTP/1 parser would already have refused.
func TestInboundRejectsPathsItsServerWouldNot(t *testing.T) {
	ca := meshtest.NewCA(t, testTD)
	var reached atomic.Int32
	app := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached.Add(1) }))
	t.Cleanup(app.Close)
	server := startProxyAt(t, ca, "api", "backend", app.Listener.Addr().String(), testLogger(t))
	for _, mode := range []string{"NONE", "BASE", "MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES"} {
		m := mesh()
		m.PathNormalization = mode
		mustApply(t, server, &xds.View{Version: mode, Mesh: m})
		for _, target := range []string{"/a%2", "/a%", "/a%zz", "/a%00", "/x/%%34%31"} {
			r := httptest.NewRequest("GET", "/", nil)
			r.RequestURI, r.URL.Path, r.URL.RawPath = target, target, target
			w := httptest.NewRecorder()
			server.in.ServeHTTP(w, r)
			if w.Code != 400 {
				t.Errorf("%s %q: status %d, want 400", mode, target, w.Code)
			}
		}
	}
	if n := reached.Load(); n != 0 {
		t.Errorf("the app was reached %d times", n)
	}
}

func TestBadMeshConfigIsRejected(t *testing.T) {
	ca := meshtest.NewCA(t, testTD)
	server := startProxy(t, ca, "api", "backend", echoApp(t))
	m := mesh()
	m.PathNormalization = "SOMETIMES"
	if err := server.Apply(&xds.View{Version: "bad", Mesh: m}); err == nil {
		t.Fatal("Apply accepted an unknown path normalization")
	}
}

// BenchmarkInboundDecide measures the per-request decision (path
// normalization, request authentication, authorization) of an allowed
// request under a STRICT mesh and one ALLOW policy.
func BenchmarkInboundDecide(b *testing.B) {
	ca := meshtest.NewCA(b, testTD)
	server := startProxy(b, ca, "api", "backend", echoApp(b))
	mustApply(b, server, &xds.View{Version: "s1", Mesh: mesh(), PeerAuthentications: parse(b, strictMesh), AuthorizationPolicies: parse(b, allowFrontend+"---\n"+denyAdmin)})
	st := server.state.Load()
	r, _ := http.NewRequest("GET", "http://backend.api.svc.cluster.local/data?x=1", nil)
	r.RequestURI = "/data?x=1"
	pr := &peer{mtls: true, principal: "cluster.local/ns/web/sa/frontend", uri: "spiffe://cluster.local/ns/web/sa/frontend",
		ip: netip.MustParseAddr("10.0.0.1"), local: netip.MustParseAddrPort("10.0.0.2:15006")}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if v := server.in.decide(ctx, st, r, pr); !v.res.Allow {
			b.Fatal(v.res.Reason)
		}
	}
}
