package destrule

import (
	"slices"
	"strings"
	"testing"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/registry"
)

func parse(t *testing.T, yaml string) []config.Resource {
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
	return rs
}

// dr is a DestinationRule document.
func dr(ns, name, spec string) string {
	return "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: " + name + ", namespace: " + ns + "}\nspec: " + spec + "\n"
}

func TestSelect(t *testing.T) {
	const host = "reviews.bookinfo.svc.cluster.local"
	rules := parse(t, ""+
		dr("bookinfo", "reviews", "{host: reviews, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}")+
		dr("bookinfo", "reviews-private", "{host: ratings, exportTo: ['.'], trafficPolicy: {tls: {mode: DISABLE}}}")+
		dr("web", "reviews-web", "{host: reviews.bookinfo.svc.cluster.local, exportTo: [other], trafficPolicy: {tls: {mode: DISABLE}}}")+
		dr("web", "sleep-only", "{host: details.bookinfo.svc.cluster.local, workloadSelector: {matchLabels: {app: sleep}}, trafficPolicy: {tls: {mode: SIMPLE}}}")+
		dr("web", "details", "{host: details.bookinfo.svc.cluster.local, trafficPolicy: {tls: {mode: DISABLE}}}")+
		dr("istio-system", "mesh", "{host: '*.local', trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}")+
		dr("istio-system", "cluster", "{host: '*.svc.cluster.local', trafficPolicy: {tls: {mode: DISABLE}}}")+
		dr("istio-system", "root-private", "{host: '*.example.com', exportTo: ['.'], trafficPolicy: {tls: {mode: SIMPLE}}}")+
		dr("api", "only-for-web", "{host: backend.api.svc.cluster.local, exportTo: [web], trafficPolicy: {tls: {mode: DISABLE}}}")+
		dr("api", "selector-elsewhere", "{host: payments.api.svc.cluster.local, workloadSelector: {matchLabels: {app: sleep}}, trafficPolicy: {tls: {mode: DISABLE}}}")+
		dr("shop", "selector-only", "{host: cart.api.svc.cluster.local, workloadSelector: {matchLabels: {app: other}}, trafficPolicy: {tls: {mode: DISABLE}}}"))

	for _, tc := range []struct {
		name   string
		client Client
		host   string
		hostNS string
		want   string // keys joined, "" for none
	}{
		{"host's namespace, short host resolved there", Client{Namespace: "web"}, host, "bookinfo", "istio-system/cluster"},
		{"a rule not exported to its own namespace does not govern it", Client{Namespace: "web"}, host, "bookinfo", "bookinfo/reviews"},
		{"client's namespace first", Client{Namespace: "web"}, "details.bookinfo.svc.cluster.local", "bookinfo", "web/details"},
		{"exported rule of the host's namespace", Client{Namespace: "shop"}, host, "bookinfo", "bookinfo/reviews"},
		{"private rule invisible elsewhere: root namespace's", Client{Namespace: "shop"}, "ratings.bookinfo.svc.cluster.local", "bookinfo", "istio-system/cluster"},
		{"private rule visible at home", Client{Namespace: "bookinfo"}, "ratings.bookinfo.svc.cluster.local", "bookinfo", "bookinfo/reviews-private"},
		{"root namespace, most specific wildcard", Client{Namespace: "shop"}, "x.y.svc.cluster.local", "y", "istio-system/cluster"},
		{"root namespace, wider wildcard", Client{Namespace: "shop"}, "x.local", "", "istio-system/mesh"},
		{"root private rule only for the root namespace", Client{Namespace: "shop"}, "api.example.com", "", ""},
		{"root private rule in the root namespace", Client{Namespace: "istio-system"}, "api.example.com", "", "istio-system/root-private"},
		{"exported to one namespace: it", Client{Namespace: "web"}, "backend.api.svc.cluster.local", "api", "api/only-for-web"},
		{"exported to one namespace: not another", Client{Namespace: "shop"}, "backend.api.svc.cluster.local", "api", "istio-system/cluster"},
		{"selector matches: it wins", Client{Namespace: "web", Labels: map[string]string{"app": "sleep"}}, "details.bookinfo.svc.cluster.local", "bookinfo", "web/sleep-only"},
		{"selector does not match: the catch-all", Client{Namespace: "web", Labels: map[string]string{"app": "curl"}}, "details.bookinfo.svc.cluster.local", "bookinfo", "web/details"},
		{"selector of another namespace never applies, and the lookup stops there", Client{Namespace: "web", Labels: map[string]string{"app": "sleep"}}, "payments.api.svc.cluster.local", "api", ""},
		{"the namespace naming the host stops the lookup", Client{Namespace: "shop", Labels: map[string]string{"app": "sleep"}}, "cart.api.svc.cluster.local", "api", ""},
		{"no rule at all", Client{Namespace: "x", RootNamespace: "mesh-root"}, host, "bookinfo", "bookinfo/reviews"},
		{"case and trailing dot", Client{Namespace: "shop"}, "Reviews.Bookinfo.svc.cluster.local.", "bookinfo", "bookinfo/reviews"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := rules
			if tc.name == "host's namespace, short host resolved there" {
				// Without the web namespace's own rule.
				rs = slices.DeleteFunc(slices.Clone(rules), func(r config.Resource) bool { return r.Namespace == "web" || r.Namespace == "bookinfo" })
			}
			got := ""
			if r := Select(rs, tc.client, tc.host, tc.hostNS); r != nil {
				got = strings.Join(r.Keys, ",")
			}
			if got != tc.want {
				t.Errorf("Select = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestMerge(t *testing.T) {
	rules := parse(t, ""+
		dr("a", "one", "{host: svc.a.svc.cluster.local, subsets: [{name: v1, labels: {v: '1'}}]}")+
		dr("a", "two", "{host: svc, trafficPolicy: {tls: {mode: DISABLE}}, subsets: [{name: v1, labels: {v: other}}, {name: v2, labels: {v: '2'}}]}")+
		dr("a", "three", "{host: svc, trafficPolicy: {tls: {mode: SIMPLE}}}"))
	r := Select(rules, Client{Namespace: "a"}, "svc.a.svc.cluster.local", "a")
	if r == nil || strings.Join(r.Keys, ",") != "a/one,a/two,a/three" {
		t.Fatalf("merged %v", r)
	}
	if got := r.Policy("", 0).TLS.GetMode().String(); got != "DISABLE" {
		t.Errorf("tls %s: the first rule with a traffic policy gives it", got)
	}
	if l, _ := r.Subset("v1"); l["v"] != "1" {
		t.Errorf("subset v1 %v: the first definition wins", l)
	}
	if !slices.Equal(r.Subsets(), []string{"v1", "v2"}) {
		t.Errorf("subsets %v", r.Subsets())
	}
}

func TestPolicyPrecedence(t *testing.T) {
	rules := parse(t, dr("a", "svc", `
  host: svc
  trafficPolicy:
    tls: {mode: ISTIO_MUTUAL}
    loadBalancer: {simple: RANDOM}
    portLevelSettings:
    - port: {number: 80}
      tls: {mode: DISABLE}
    - port: {number: 81}
      connectionPool: {tcp: {maxConnections: 3}}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      tls: {mode: SIMPLE}
      portLevelSettings:
      - port: {number: 443}
        tls: {mode: MUTUAL, clientCertificate: /c, privateKey: /k}
  - name: v2
    labels: {version: v2}`))
	r := Select(rules, Client{Namespace: "a"}, "svc.a.svc.cluster.local", "a")
	for _, tc := range []struct {
		subset string
		port   uint32
		tls    string
	}{
		{"", 0, "ISTIO_MUTUAL"},
		{"", 8080, "ISTIO_MUTUAL"},
		{"", 80, "DISABLE"},
		{"", 81, "ISTIO_MUTUAL"}, // port settings without tls fall back
		{"v1", 80, "SIMPLE"},     // the subset's policy beats the host's port
		{"v1", 443, "MUTUAL"},
		{"v2", 80, "DISABLE"}, // no policy of its own: the host's
		{"nope", 0, "ISTIO_MUTUAL"},
	} {
		p := r.Policy(tc.subset, tc.port)
		if got := p.TLS.GetMode().String(); got != tc.tls {
			t.Errorf("Policy(%q, %d).TLS = %s, want %s", tc.subset, tc.port, got, tc.tls)
		}
	}
	if p := r.Policy("", 81); p.ConnectionPool.GetTcp().GetMaxConnections() != 3 || p.LoadBalancer.GetSimple().String() != "RANDOM" {
		t.Errorf("port 81: %v", p)
	}
	var none *Rule
	if p := none.Policy("v1", 80); p.TLS != nil {
		t.Error("nil rule has a policy")
	}
	if _, ok := r.Subset("nope"); ok {
		t.Error("an undefined subset was found")
	}
}

func TestSubsetEndpoints(t *testing.T) {
	eps := []registry.Endpoint{
		{Address: "a:1", Labels: map[string]string{"app": "r", "version": "v1"}},
		{Address: "b:1", Labels: map[string]string{"app": "r", "version": "v2"}},
		{Address: "c:1", Labels: map[string]string{"app": "r", "version": "v1", "zone": "z"}},
		{Address: "d:1"},
	}
	addrs := func(eps []registry.Endpoint) (out []string) {
		for _, e := range eps {
			out = append(out, e.Address)
		}
		return out
	}
	for _, tc := range []struct {
		labels map[string]string
		want   []string
	}{
		{map[string]string{"version": "v1"}, []string{"a:1", "c:1"}},
		{map[string]string{"version": "v2", "app": "r"}, []string{"b:1"}},
		{map[string]string{"version": "v3"}, nil},
		{nil, []string{"a:1", "b:1", "c:1", "d:1"}},
	} {
		if got := addrs(SubsetEndpoints(eps, tc.labels)); !slices.Equal(got, tc.want) {
			t.Errorf("SubsetEndpoints(%v) = %v, want %v", tc.labels, got, tc.want)
		}
	}
}

func TestVisible(t *testing.T) {
	rules := parse(t, dr("a", "private", "{host: x, exportTo: ['.']}")+dr("a", "to-b", "{host: x, exportTo: [b]}")+dr("a", "all", "{host: x}"))
	for _, tc := range []struct {
		rule int
		ns   string
		want bool
	}{
		{0, "a", true}, {0, "b", false},
		{1, "a", false}, {1, "b", true}, {1, "c", false},
		{2, "c", true},
	} {
		if got := Visible(rules[tc.rule], tc.ns); got != tc.want {
			t.Errorf("Visible(%s, %s) = %v", rules[tc.rule].Key(), tc.ns, got)
		}
	}
}
