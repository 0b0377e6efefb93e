package route

import (
	"testing"

	"github.com/zmesh/zmesh/internal/config"
)

// FuzzRoute checks that no VirtualService accepted by validation, and no
// request, makes Compile or a decision panic, and that a matched route
// always has somewhere to go.
func FuzzRoute(f *testing.F) {
	f.Add([]byte(matchVS), "GET", "/api/x?debug=1", "gold")
	f.Add([]byte("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a}\nspec: {hosts: [a], http: [{match: [{uri: {prefix: /a}}], rewrite: {uri: /b}, route: [{destination: {host: b}, weight: 1}, {destination: {host: c}, weight: 3}]}]}\n"), "POST", "/a/b", "")
	f.Add([]byte("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a}\nspec: {hosts: [a], http: [{match: [{uri: {regex: '/x(.*)'}}], redirect: {prefixRewrite: /y}}]}\n"), "GET", "/x?", "")
	f.Add([]byte("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a}\nspec: {hosts: [a], tcp: [{match: [{port: 4}], route: [{destination: {host: b}, weight: 1}, {destination: {host: c}}]}], tls: [{match: [{sniHosts: ['*.x']}], route: [{destination: {host: d}}]}]}\n"), "GET", "/abc", "s.x")
	f.Fuzz(func(t *testing.T, yaml []byte, method, path, tier string) {
		rs, _, err := config.Parse(yaml, "fuzz.yaml")
		if err != nil {
			return
		}
		var valid []config.Resource
		for _, r := range rs {
			if r.Kind == config.KindVirtualService && config.Validate(r) == nil {
				valid = append(valid, r)
			}
		}
		tab, err := Compile(valid, Config{Namespace: "default", DNSDomain: "cluster.local"})
		if err != nil {
			t.Fatalf("Compile refused validated VirtualServices: %v", err)
		}
		req := &Request{Method: method, Path: path, Authority: "a", Header: map[string][]string{"X-Tier": {tier}}}
		for _, r := range valid {
			for _, h := range r.Spec.(interface{ GetHosts() []string }).GetHosts() {
				vs := tab.Lookup(Host(h, r.Namespace, "cluster.local"))
				stream := &Stream{Port: uint32(len(path)), SNI: tier}
				for _, sr := range []*StreamRoute{vs.MatchTCP(stream), vs.MatchTLS(stream)} {
					if sr != nil && sr.Pick(uint64(len(tier))) == nil {
						t.Fatal("a stream route matched but picked no destination")
					}
				}
				rt, prefix := vs.Match(req)
				if rt == nil {
					continue
				}
				switch {
				case rt.Redirect != nil:
					_ = rt.Redirect.Location("http", "a:80", path, prefix)
				case rt.Direct != nil:
				default:
					if rt.Pick(uint64(len(path))) == nil {
						t.Fatalf("route %q matched but picked no destination", rt.Name)
					}
					_ = rt.Rewrite.Path(path, prefix)
				}
			}
		}
	})
}
