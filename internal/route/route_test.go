package route

import (
	"math"
	"net/netip"
	"testing"
	"time"

	"github.com/zmesh/zmesh/internal/config"
)

// compile parses Istio YAML (VirtualServices) and compiles it for a proxy
// in namespace web labelled app=frontend.
func compile(t testing.TB, yaml string) *Table {
	t.Helper()
	rs, _, err := config.Parse([]byte(yaml), t.Name())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if err := config.Validate(r); err != nil {
			t.Fatal(err)
		}
	}
	tab, err := Compile(rs, Config{Namespace: "web", Labels: map[string]string{"app": "frontend", "version": "v1"}, DNSDomain: "cluster.local"})
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

const matchVS = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: backend, namespace: api}
spec:
  hosts: [backend]
  http:
  - name: exact
    match: [{uri: {exact: /exact}}]
    route: [{destination: {host: exact}}]
  - name: regex
    match: [{uri: {regex: "/items/[0-9]+"}}]
    route: [{destination: {host: regex}}]
  - name: header-and-method
    match: [{headers: {end-user: {exact: jason}}, method: {exact: POST}}]
    route: [{destination: {host: jason}}]
  - name: header-prefix-or-query
    match:
    - headers: {x-tier: {prefix: gold}}
    - queryParams: {debug: {exact: "1"}}
    route: [{destination: {host: gold}}]
  - name: presence
    match: [{headers: {x-canary: {}}, withoutHeaders: {x-skip: {}}}]
    route: [{destination: {host: canary}}]
  - name: port
    match: [{port: 8080}]
    route: [{destination: {host: port}}]
  - name: other-source
    match: [{sourceLabels: {app: stranger}}]
    route: [{destination: {host: stranger}}]
  - name: own-source
    match: [{sourceLabels: {app: frontend}, uri: {prefix: /src}, sourceNamespace: web}]
    route: [{destination: {host: source}}]
  - name: other-namespace
    match: [{sourceNamespace: api}]
    route: [{destination: {host: stranger}}]
  - name: ignore-case
    match: [{uri: {prefix: /CaSe}, ignoreUriCase: true}]
    route: [{destination: {host: case}}]
  - name: prefix
    match: [{uri: {prefix: /api}}]
    route: [{destination: {host: api}}]
`

func TestMatch(t *testing.T) {
	tab := compile(t, matchVS)
	vs := tab.Lookup("backend.api.svc.cluster.local")
	if vs == nil {
		t.Fatal("no VirtualService for backend.api.svc.cluster.local (the short host resolved in the VirtualService's namespace)")
	}
	h := func(kv ...string) map[string][]string {
		m := map[string][]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = append(m[kv[i]], kv[i+1])
		}
		return m
	}
	cases := []struct {
		name string
		req  Request
		want string // route name; "" for no match
	}{
		{"exact path", Request{Method: "GET", Path: "/exact"}, "exact"},
		{"exact path ignores the query", Request{Method: "GET", Path: "/exact?a=b"}, "exact"},
		{"exact is not a prefix", Request{Method: "GET", Path: "/exactly"}, ""},
		{"regex matches the whole path", Request{Method: "GET", Path: "/items/42"}, "regex"},
		{"regex is anchored", Request{Method: "GET", Path: "/items/42/x"}, ""},
		{"header and method", Request{Method: "POST", Path: "/", Header: h("End-User", "jason")}, "header-and-method"},
		{"header without the method", Request{Method: "GET", Path: "/", Header: h("End-User", "jason")}, ""},
		{"header value differs", Request{Method: "POST", Path: "/", Header: h("End-User", "json")}, ""},
		{"either match of a route: header prefix", Request{Method: "GET", Path: "/", Header: h("X-Tier", "golden")}, "header-prefix-or-query"},
		{"either match of a route: query", Request{Method: "GET", Path: "/x?debug=1"}, "header-prefix-or-query"},
		{"query value differs", Request{Method: "GET", Path: "/x?debug=10"}, ""},
		{"header presence", Request{Method: "GET", Path: "/", Header: h("X-Canary", "")}, "presence"},
		{"withoutHeaders excludes", Request{Method: "GET", Path: "/", Header: h("X-Canary", "1", "X-Skip", "1")}, ""},
		{"port", Request{Method: "GET", Path: "/", Port: 8080}, "port"},
		{"sourceLabels of this proxy", Request{Method: "GET", Path: "/src/x"}, "own-source"},
		{"ignoreUriCase", Request{Method: "GET", Path: "/case/x"}, "ignore-case"},
		{"prefix", Request{Method: "GET", Path: "/api/exact"}, "prefix"},
		{"first match wins: a POST from jason on port 8080", Request{Method: "POST", Path: "/", Port: 8080, Header: h("End-User", "jason")}, "header-and-method"},
		{"nothing matches: 404", Request{Method: "GET", Path: "/nothing"}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rt, _ := vs.Match(&c.req)
			got := ""
			if rt != nil {
				got = rt.Name
			}
			if got != c.want {
				t.Errorf("Match(%s %s) = %q, want %q", c.req.Method, c.req.Path, got, c.want)
			}
		})
	}
}

func TestLookupAndVisibility(t *testing.T) {
	tab := compile(t, `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a, namespace: api}
spec: {hosts: [backend, "*.example.com"], http: [{route: [{destination: {host: backend}}]}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: own, namespace: web}
spec: {hosts: [backend.api.svc.cluster.local], http: [{route: [{destination: {host: own}}]}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: private, namespace: other}
spec: {hosts: [private.other.svc.cluster.local], exportTo: ["."], http: [{route: [{destination: {host: x}}]}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: gw, namespace: web}
spec: {hosts: [gw.example.org], gateways: [ingress], http: [{route: [{destination: {host: x}}]}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: long, namespace: web}
spec: {hosts: ["*.api.example.com"], http: [{route: [{destination: {host: long}}]}]}
`)
	cases := []struct{ host, want string }{
		{"backend.api.svc.cluster.local", "web/own"}, // the proxy's own namespace wins
		{"BACKEND.api.svc.cluster.local.", "web/own"},
		{"x.example.com", "api/a"},
		{"y.api.example.com", "web/long"}, // the longest wildcard wins
		{"example.com", ""},
		{"private.other.svc.cluster.local", ""}, // exportTo . in another namespace
		{"gw.example.org", ""},                  // bound to a gateway only
	}
	for _, c := range cases {
		got := ""
		if vs := tab.Lookup(c.host); vs != nil {
			got = vs.Name
		}
		if got != c.want {
			t.Errorf("Lookup(%s) = %q, want %q", c.host, got, c.want)
		}
	}
}

func TestPickWeights(t *testing.T) {
	tab := compile(t, `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a, namespace: api}
spec:
  hosts: [backend]
  http:
  - route:
    - {destination: {host: backend-v1}, weight: 80}
    - {destination: {host: backend-v2, port: {number: 9090}}, weight: 20}
    - {destination: {host: never}, weight: 0}
`)
	rt, _ := tab.Lookup("backend.api.svc.cluster.local").Match(&Request{Path: "/"})
	counts := map[string]int{}
	for n := uint64(0); n < 1000; n++ {
		counts[rt.Pick(n).Host]++
	}
	if counts["backend-v1.api.svc.cluster.local"] != 800 || counts["backend-v2.api.svc.cluster.local"] != 200 || counts["never.api.svc.cluster.local"] != 0 {
		t.Errorf("picks over 1000 consecutive numbers: %v, want 800/200/0", counts)
	}
	if d := rt.Pick(999); d.Port != 9090 {
		t.Errorf("port = %d", d.Port)
	}
}

func TestSubsetNamed(t *testing.T) {
	yaml := `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a, namespace: api}
spec: {hosts: [backend], http: [{route: [{destination: {host: backend, subset: v2}}]}]}
`
	rt, _ := compile(t, yaml).Lookup("backend.api.svc.cluster.local").Match(&Request{Path: "/"})
	if d := rt.Pick(0); d.Subset != "v2" || d.Host != "backend.api.svc.cluster.local" {
		t.Errorf("destination = %+v, want subset v2 of backend.api.svc.cluster.local", d)
	}
}

func TestActions(t *testing.T) {
	tab := compile(t, `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a, namespace: api}
spec:
  hosts: [backend]
  http:
  - match: [{uri: {prefix: /old}}]
    redirect: {uri: /new, authority: new.example.com}
  - match: [{uri: {prefix: /moved}}]
    redirect: {prefixRewrite: /here, redirectCode: 302, scheme: https}
  - match: [{uri: {prefix: /v1/}}]
    rewrite: {uri: /v2/, authority: other}
    timeout: 3s
    retries: {attempts: 4, perTryTimeout: 0.5s, retryOn: "gateway-error,409"}
    route: [{destination: {host: backend}}]
  - match: [{uri: {prefix: /re}}]
    rewrite: {uriRegexRewrite: {match: "^/re/([a-z]+)/([0-9]+)", rewrite: "/\\2/\\1"}}
    route: [{destination: {host: backend}}]
  - match: [{uri: {prefix: /fault}}]
    fault: {delay: {fixedDelay: 2s, percentage: {value: 50}}, abort: {httpStatus: 503, percentage: {value: 10}}}
    timeout: 1s
    route: [{destination: {host: backend}}]
  - match: [{uri: {exact: /teapot}}]
    directResponse: {status: 418, body: {string: short and stout}}
  - mirror: {host: backend-v2}
    mirrorPercentage: {value: 25}
    headers: {request: {set: {x-a: b}, remove: [x-c]}, response: {add: {x-d: e}}}
    route: [{destination: {host: backend}}]
`)
	vs := tab.Lookup("backend.api.svc.cluster.local")
	match := func(path string) (*HTTPRoute, string) { return vs.Match(&Request{Method: "GET", Path: path}) }

	rt, prefix := match("/old/x?q=1")
	if loc := rt.Redirect.Location("http", "backend:8000", "/old/x?q=1", prefix); loc != "http://new.example.com/new?q=1" || rt.Redirect.Code != 301 {
		t.Errorf("redirect = %d %s", rt.Redirect.Code, loc)
	}
	rt, prefix = match("/moved/a")
	if loc := rt.Redirect.Location("http", "backend:8000", "/moved/a", prefix); loc != "https://backend/here/a" || rt.Redirect.Code != 302 {
		t.Errorf("prefix redirect = %d %s", rt.Redirect.Code, loc)
	}
	rt, prefix = match("/v1/items?x=1")
	if p := rt.Rewrite.Path("/v1/items?x=1", prefix); p != "/v2/items?x=1" || rt.Rewrite.Authority != "other" {
		t.Errorf("rewrite = %s %s", p, rt.Rewrite.Authority)
	}
	if rt.Timeout != 3*time.Second || rt.Retry.Attempts != 4 || rt.Retry.PerTry != 500*time.Millisecond {
		t.Errorf("timeout/retries = %v %+v", rt.Timeout, rt.Retry)
	}
	rt, prefix = match("/re/abc/12")
	if p := rt.Rewrite.Path("/re/abc/12", prefix); p != "/12/abc" {
		t.Errorf("regex rewrite = %s", p)
	}
	rt, _ = match("/fault")
	if rt.Fault == nil || rt.Fault.Delay != 2*time.Second || rt.Fault.DelayPercent != 50 || rt.Fault.Abort != 503 || rt.Fault.AbortPercent != 10 {
		t.Errorf("fault = %+v", rt.Fault)
	}
	if rt.Timeout != 0 || rt.Retry.Attempts != 0 {
		t.Errorf("a route with faults has timeout %v and %d retries; Istio enables neither", rt.Timeout, rt.Retry.Attempts)
	}
	rt, _ = match("/teapot")
	if rt.Direct == nil || rt.Direct.Status != 418 || string(rt.Direct.Body) != "short and stout" {
		t.Errorf("direct = %+v", rt.Direct)
	}
	rt, _ = match("/other")
	if len(rt.Mirrors) != 1 || rt.Mirrors[0].Percent != 25 || rt.Mirrors[0].Destination.Host != "backend-v2.api.svc.cluster.local" {
		t.Errorf("mirrors = %+v", rt.Mirrors)
	}
	if rt.Retry.Attempts != 2 || !rt.Retry.On.Conditions["connect-failure"] || rt.Retry.On.Conditions["5xx"] {
		t.Errorf("default retries = %+v, want Istio's (2, connect-failure,refused-stream,unavailable,cancelled)", rt.Retry)
	}
	hdr := map[string][]string{"X-C": {"1"}, "X-A": {"old"}}
	rt.Headers.Request.Apply(hdr)
	if len(hdr) != 1 || hdr["X-A"][0] != "b" {
		t.Errorf("request headers = %v", hdr)
	}
}

func TestRetriable(t *testing.T) {
	on := func(s string) Retry {
		r, err := config.ParseRetryOn(s)
		if err != nil {
			t.Fatal(err)
		}
		return Retry{Attempts: 1, On: r}
	}
	cases := []struct {
		retryOn string
		status  int
		connect bool
		grpc    string
		want    bool
	}{
		{"5xx", 503, false, "", true},
		{"5xx", 500, false, "", true},
		{"5xx", 404, false, "", false},
		{"5xx", 0, false, "", true},
		{"gateway-error", 500, false, "", false},
		{"gateway-error", 504, false, "", true},
		{"connect-failure", 0, true, "", true},
		{"connect-failure", 0, false, "", false},
		{"connect-failure", 503, false, "", false},
		{"reset", 0, false, "", true},
		{"retriable-4xx", 409, false, "", true},
		{"503", 503, false, "", true},
		{"503", 502, false, "", false},
		{"", 200, false, "14", true}, // Istio's default retries gRPC unavailable
		{"", 503, false, "", false},  // ... but not an HTTP 503
	}
	for _, c := range cases {
		r := on(c.retryOn)
		if got := r.Retriable(c.status, c.connect, c.grpc); got != c.want {
			t.Errorf("retryOn %q: Retriable(%d, connect=%v, grpc=%q) = %v, want %v", c.retryOn, c.status, c.connect, c.grpc, got, c.want)
		}
	}
}

func TestHit(t *testing.T) {
	hits := 0
	for i := 0; i < 1000; i++ {
		if Hit(25, float64(i)/1000) {
			hits++
		}
	}
	if hits != 250 || Hit(0, 0) || !Hit(100, math.Nextafter(1, 0)) {
		t.Errorf("Hit(25) over 1000 even steps = %d", hits)
	}
}

func BenchmarkMatch(b *testing.B) {
	tab := compile(b, matchVS)
	req := &Request{Method: "GET", Path: "/api/users?id=1", Header: map[string][]string{"X-Tier": {"silver"}}}
	b.ReportAllocs()
	for b.Loop() {
		vs := tab.Lookup("backend.api.svc.cluster.local")
		if rt, _ := vs.Match(req); rt == nil || rt.Pick(7) == nil {
			b.Fatal("no route")
		}
	}
}

func TestStreamRoutes(t *testing.T) {
	tab := compile(t, `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: db, namespace: api}
spec:
  hosts: [db, "*.example.com"]
  tls:
  - match: [{sniHosts: [secure.example.com], port: 443}]
    route: [{destination: {host: secure-v2}}]
  - match: [{sniHosts: ["*.example.com"], sourceLabels: {app: stranger}}]
    route: [{destination: {host: never}}]
  tcp:
  - match: [{port: 9000}]
    route: [{destination: {host: db-v1}, weight: 25}, {destination: {host: db-v2}, weight: 75}]
  - match: [{destinationSubnets: [10.1.0.0/16]}]
    route: [{destination: {host: subnet}}]
  - match: [{sourceLabels: {app: stranger}}]
    route: [{destination: {host: never}}]
`)
	vs := tab.Lookup("db.api.svc.cluster.local")
	if vs == nil || vs.HTTP {
		t.Fatalf("Lookup = %+v; a VirtualService without http routes must not route HTTP", vs)
	}
	host := func(r *StreamRoute) string {
		if r == nil {
			return ""
		}
		return r.Pick(0).Host
	}
	cases := []struct {
		name string
		tls  bool
		s    Stream
		want string
	}{
		{"tcp by port", false, Stream{Port: 9000}, "db-v1.api.svc.cluster.local"},
		{"tcp other port", false, Stream{Port: 5432}, ""},
		{"tcp by destination subnet", false, Stream{Port: 5432, Dst: netip.MustParseAddr("10.1.2.3")}, "subnet.api.svc.cluster.local"},
		{"tcp outside the subnet", false, Stream{Port: 5432, Dst: netip.MustParseAddr("10.2.2.3")}, ""},
		{"tls by SNI and port", true, Stream{Port: 443, SNI: "Secure.Example.com"}, "secure-v2.api.svc.cluster.local"},
		{"tls other port", true, Stream{Port: 8443, SNI: "secure.example.com"}, ""},
		{"tls other SNI", true, Stream{Port: 443, SNI: "other.example.com"}, ""},
		{"tls without SNI", true, Stream{Port: 443}, ""},
	}
	for _, c := range cases {
		got := ""
		if c.tls {
			got = host(vs.MatchTLS(&c.s))
		} else {
			got = host(vs.MatchTCP(&c.s))
		}
		if got != c.want {
			t.Errorf("%s: routed to %q, want %q", c.name, got, c.want)
		}
	}
	r := vs.MatchTCP(&Stream{Port: 9000})
	counts := map[string]int{}
	for n := uint64(0); n < 100; n++ {
		counts[r.Pick(n).Host]++
	}
	if counts["db-v2.api.svc.cluster.local"] != 75 {
		t.Errorf("tcp weights: %v", counts)
	}
}
