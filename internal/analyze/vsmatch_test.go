package analyze

import (
	"slices"
	"strings"
	"testing"
)

// vsDoc is a sidecar VirtualService in ns "web" with the given http
// routes (YAML flow sequence items).
func vsDoc(http ...string) string {
	return "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs, namespace: web}\nspec:\n  hosts: [app]\n  http: [" + strings.Join(http, ", ") + "]"
}

// route is an http route with the given matches (YAML flow items).
func route(matches ...string) string {
	if len(matches) == 0 {
		return "{route: [{destination: {host: app}}]}"
	}
	return "{match: [" + strings.Join(matches, ", ") + "], route: [{destination: {host: app}}]}"
}

// TestVirtualServiceMatches pins Istio's rule case by case, including
// where its overlap test says more than a proxy would do (istioctl says
// the same; these are the cases a "fix" would silently diverge on).
func TestVirtualServiceMatches(t *testing.T) {
	const (
		ineffective01 = "Info [IST0131] (VirtualService web/vs) VirtualService rule #1 match #0 is not used (duplicate/overlapping match in rule #0)."
		unused1       = "Warning [IST0130] (VirtualService web/vs) VirtualService rule #1 not used (all matches used by prior rules)."
		covered01     = "Info [IST0131] (VirtualService web/vs) VirtualService rule #1 match #0 of prefix %s is not used (duplicate/overlapping match in rule #0 of prefix %s on #0)."
	)
	cov := func(b, a string) string { return strings.Replace(strings.Replace(covered01, "%s", b, 1), "%s", a, 1) }
	cases := []struct {
		name string
		doc  string
		want []string
	}{
		{"header maps in another order are equal",
			vsDoc(route("{headers: {a: {exact: '1'}, b: {exact: '2'}}}"), route("{headers: {b: {exact: '2'}, a: {exact: '1'}}}")),
			[]string{ineffective01, unused1}},
		{"a match name does not make a match different",
			vsDoc(route("{name: m1, headers: {a: {exact: '1'}}}"), route("{name: m2, headers: {a: {exact: '1'}}}")),
			[]string{strings.Replace(ineffective01, "match #0", `match "m2"`, 1), unused1}},
		{"exact and prefix of one value differ",
			vsDoc(route("{headers: {a: {exact: '1'}}}"), route("{headers: {a: {prefix: '1'}}}")), nil},
		{"ignoreUriCase makes a match different",
			vsDoc(route("{uri: {exact: /a}}"), route("{uri: {exact: /a}, ignoreUriCase: true}")), nil},
		{"a catch-all last is fine",
			vsDoc(route("{uri: {prefix: /a}}"), route()), nil},
		{"a longer prefix after a shorter one is covered",
			vsDoc(route("{uri: {prefix: /api}}"), route("{uri: {prefix: /api/v2}}")),
			[]string{cov("/api/v2", "/api")}},
		{"a shorter prefix after a longer one is not",
			vsDoc(route("{uri: {prefix: /api/v2}}"), route("{uri: {prefix: /api}}")), nil},
		{"an exact uri is not compared to prefixes",
			vsDoc(route("{uri: {prefix: /api}}"), route("{uri: {exact: /api/v2}}")), nil},
		{"no method is GET: a GET match is covered",
			vsDoc(route("{uri: {prefix: /api}}"), route("{uri: {prefix: /api/v2}, method: {exact: GET}}")),
			[]string{cov("/api/v2", "/api")}},
		{"no method is GET: a POST match is not covered",
			vsDoc(route("{uri: {prefix: /api}}"), route("{uri: {prefix: /api/v2}, method: {exact: POST}}")), nil},
		{"another port is not covered",
			vsDoc(route("{uri: {prefix: /api}, port: 80}"), route("{uri: {prefix: /api/v2}, port: 81}")), nil},
		{"another set of header names is not covered",
			vsDoc(route("{uri: {prefix: /api}}"), route("{uri: {prefix: /api/v2}, headers: {x: {exact: '1'}}}")), nil},
		{"the same header value is covered",
			vsDoc(route("{uri: {prefix: /api}, headers: {x: {exact: '1'}}}"), route("{uri: {prefix: /api/v2}, headers: {x: {exact: '1'}}}")),
			[]string{cov("/api/v2", "/api")}},
		{"Istio: regex headers compare as equal, whatever their patterns",
			vsDoc(route("{uri: {prefix: /api}, headers: {x: {regex: 'a.*'}}}"), route("{uri: {prefix: /api/v2}, headers: {x: {regex: 'b.*'}}}")),
			[]string{cov("/api/v2", "/api")}},
		{"Istio: an earlier key that extends the later one covers it",
			vsDoc(route("{uri: {prefix: /api}, authority: {exact: app.web.svc}}"), route("{uri: {prefix: /api/v2}, authority: {exact: app.web}}")),
			[]string{cov("/api/v2", "/api")}},
		{"Istio: sourceLabels are not compared",
			vsDoc(route("{uri: {prefix: /api}, sourceLabels: {app: a}}"), route("{uri: {prefix: /api/v2}}")),
			[]string{cov("/api/v2", "/api")}},
		{"a match covered in its own route",
			vsDoc(route("{uri: {prefix: /api}}", "{uri: {prefix: /api/v2}}")),
			[]string{"Info [IST0131] (VirtualService web/vs) VirtualService rule #0 match #1 of prefix /api/v2 is not used (duplicate/overlapping match in rule #0 of prefix /api on #0)."}},
		{"duplicates are compared with the first route that has the match",
			vsDoc(route("{uri: {exact: /a}}"), route("{uri: {exact: /b}}"), route("{uri: {exact: /b}}", "{uri: {exact: /a}}")),
			[]string{
				"Info [IST0131] (VirtualService web/vs) VirtualService rule #2 match #0 is not used (duplicate/overlapping match in rule #1).",
				"Info [IST0131] (VirtualService web/vs) VirtualService rule #2 match #1 is not used (duplicate/overlapping match in rule #0).",
				"Warning [IST0130] (VirtualService web/vs) VirtualService rule #2 not used (all matches used by prior rules).",
			}},
		{"after a catch-all, matches are neither compared nor covered",
			vsDoc(route("{uri: {prefix: /api}}"), route(), route("{uri: {prefix: /api}}"), route()),
			[]string{
				"Warning [IST0130] (VirtualService web/vs) VirtualService rule #2 not used (route without matches defined before).",
				"Warning [IST0130] (VirtualService web/vs) VirtualService rule #3 not used (only the last rule can have no matches).",
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := append(messagesOf(t, "IST0130", false, tc.doc), messagesOf(t, "IST0131", false, tc.doc)...)
			slices.Sort(got)
			want := slices.Clone(tc.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

// TestVirtualServiceL4Matches: TLS matches are compared whole (sniHosts
// in another order differ, as in Istio's JSON comparison).
func TestVirtualServiceL4Matches(t *testing.T) {
	doc := func(tls ...string) string {
		return "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs, namespace: web}\nspec:\n  hosts: [a.example.com, b.example.com]\n  tls: [" + strings.Join(tls, ", ") + "]"
	}
	tlsRoute := func(match string) string {
		return "{match: [" + match + "], route: [{destination: {host: a.example.com}}]}"
	}
	if got := messagesOf(t, "IST0131", false, doc(tlsRoute("{sniHosts: [a.example.com, b.example.com]}"), tlsRoute("{sniHosts: [b.example.com, a.example.com]}"))); len(got) != 0 {
		t.Errorf("sniHosts in another order: %v", got)
	}
	got := messagesOf(t, "IST0131", false, doc(tlsRoute("{sniHosts: [a.example.com], port: 443}"), tlsRoute("{sniHosts: [b.example.com]}"), tlsRoute("{port: 443, sniHosts: [a.example.com]}")))
	want := []string{"Info [IST0131] (VirtualService web/vs) VirtualService rule #2 match #0 is not used (duplicate/overlapping match in rule #0)."}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}
