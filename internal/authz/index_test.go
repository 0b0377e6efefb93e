package authz

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/zmesh/zmesh/internal/config"
)

// The principal index must not change which rule is reported: the first
// matching rule in policy order, exactly as a plain scan finds it.
func TestRuleSetMatchesLinearScan(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	principals := []string{"cluster.local/ns/a/sa/x", "cluster.local/ns/a/sa/y", "cluster.local/ns/b/sa/x", "cluster.local/ns/c/sa/z", "cluster.local/ns/ab/sa/x", ""}
	sources := []string{
		`{"principals":["cluster.local/ns/a/sa/x"]}`,
		`{"principals":["cluster.local/ns/a/sa/x","cluster.local/ns/b/sa/x"]}`,
		`{"principals":["cluster.local/ns/a/*"]}`,
		`{"namespaces":["b"]}`,
		`{"principals":["cluster.local/ns/a/sa/y"],"notPrincipals":["cluster.local/ns/a/sa/x"]}`,
		`{"notPrincipals":["cluster.local/ns/a/sa/y"]}`,
		`{"namespaces":["a","c"]}`,
		`{"namespaces":["a*"]}`,
		`{"namespaces":["b"],"principals":["cluster.local/ns/b/sa/x"]}`,
		`{"notNamespaces":["a"]}`,
	}
	paths := []string{"/a", "/b", "/c"}
	matched := 0
	for iter := 0; iter < 400; iter++ {
		var ps []config.Resource
		for p := 0; p < 3; p++ {
			var rules []string
			for r := 0; r < 1+rnd.IntN(5); r++ {
				var froms []string
				for f := 0; f < rnd.IntN(3); f++ {
					froms = append(froms, `{"source":`+sources[rnd.IntN(len(sources))]+`}`)
				}
				rule := `{"to":[{"operation":{"paths":["` + paths[rnd.IntN(len(paths))] + `"]}}]`
				if len(froms) > 0 {
					rule += `,"from":[` + strings.Join(froms, ",") + `]`
				}
				rules = append(rules, rule+"}")
			}
			ps = append(ps, ap(t, fmt.Sprintf("foo/p%d", p), `{"rules":[`+strings.Join(rules, ",")+`]}`))
		}
		e := mustCompile(t, Options{}, ps...)
		var compiled []*policy
		for _, r := range ps {
			p, err := (&compiler{tds: newTrustDomains(Options{})}).policy(r)
			if err != nil {
				t.Fatal(err)
			}
			compiled = append(compiled, p)
		}
		for _, pr := range principals {
			for _, pa := range paths {
				r := httpReq(from(pr), path(pa))
				var a attrs
				a.load(r, NormalizeBase)
				wantP, wantR := "", -1
			scan:
				for _, p := range compiled {
					for i := range p.rules {
						if p.rules[i].match(&a, true) {
							wantP, wantR = p.key, p.rules[i].index
							break scan
						}
					}
				}
				if wantP != "" {
					matched++
				}
				d := e.Decide(r)
				if d.Policy != wantP || (wantP != "" && d.Rule != wantR) {
					t.Fatalf("iter %d %q %q: indexed %s rule %d, scan %s rule %d", iter, pr, pa, d.Policy, d.Rule, wantP, wantR)
				}
			}
		}
	}
	if matched < 100 {
		t.Fatalf("only %d of the random cases matched a rule; the test is too weak", matched)
	}
}
