package authz

import (
	"fmt"
	"strings"
	"testing"

	"github.com/zmesh/zmesh/internal/config"
)

// benchPolicies builds n ALLOW rules selecting one workload, ten per
// policy, each of the typical shape "this service account may GET under
// its own prefix", plus one DENY policy every request is checked against.
func benchPolicies(b testing.TB, n int) []config.Resource {
	ps := []config.Resource{ap(b, "foo/deny-admin",
		`{"action":"DENY","rules":[{"to":[{"operation":{"paths":["/admin","/admin/*"]}}]},{"from":[{"source":{"notPrincipals":["*"]}}]}]}`)}
	for p := 0; p*10 < n; p++ {
		var rules []string
		for i := p * 10; i < n && i < (p+1)*10; i++ {
			rules = append(rules, fmt.Sprintf(
				`{"from":[{"source":{"principals":["cluster.local/ns/ns-%d/sa/sa-%d"]}}],"to":[{"operation":{"methods":["GET","HEAD"],"paths":["/api/%d/*"]}}]}`, i, i, i))
		}
		ps = append(ps, ap(b, fmt.Sprintf("foo/allow-%d", p), `{"rules":[`+strings.Join(rules, ",")+`]}`))
	}
	return ps
}

func benchDecide(b *testing.B, n int) {
	e := mustCompile(b, Options{}, benchPolicies(b, n)...)
	last := n - 1
	// The request matches the last rule: the worst case for a scan.
	r := httpReq(from(fmt.Sprintf("cluster.local/ns/ns-%d/sa/sa-%d", last, last)), path(fmt.Sprintf("/api/%d/items?page=2", last)),
		headers("User-Agent", "bench"))
	if d := e.Decide(r); !d.Allow || d.Policy != fmt.Sprintf("foo/allow-%d", last/10) {
		b.Fatalf("setup: %+v", d)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if d := e.Decide(r); !d.Allow {
			b.Fatal("denied")
		}
	}
}

func BenchmarkDecide1Rule(b *testing.B)      { benchDecide(b, 1) }
func BenchmarkDecide100Rules(b *testing.B)   { benchDecide(b, 100) }
func BenchmarkDecide10000Rules(b *testing.B) { benchDecide(b, 10000) }

// BenchmarkDecide100RulesNoMatch is a request no ALLOW rule matches: every
// rule is tried.
func BenchmarkDecide100RulesNoMatch(b *testing.B) {
	e := mustCompile(b, Options{}, benchPolicies(b, 100)...)
	r := httpReq(from("cluster.local/ns/other/sa/x"))
	b.ReportAllocs()
	for b.Loop() {
		if d := e.Decide(r); d.Allow {
			b.Fatal("allowed")
		}
	}
}

// BenchmarkDecideTCP100Rules is a TCP connection: the HTTP rules are skipped.
func BenchmarkDecideTCP100Rules(b *testing.B) {
	e := mustCompile(b, Options{}, benchPolicies(b, 100)...)
	r := tcpReq()
	b.ReportAllocs()
	for b.Loop() {
		e.Decide(r)
	}
}

func BenchmarkCompile100Rules(b *testing.B) {
	ps := benchPolicies(b, 100)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile(ps, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNormalizePathClean(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		NormalizePath("/api/v1/items/42?page=2", NormalizeMergeSlashes)
	}
}

func BenchmarkNormalizePathAttack(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		NormalizePath("/api//v1/./%61dmin/../items%2F42", NormalizeDecodeAndMergeSlashes)
	}
}

// BenchmarkDecide100RulesByNamespace uses rules the principal index cannot
// file (namespaces, not principals): the worst case, a scan of every rule.
func BenchmarkDecide100RulesByNamespace(b *testing.B) {
	var rules []string
	for i := 0; i < 100; i++ {
		rules = append(rules, fmt.Sprintf(`{"from":[{"source":{"namespaces":["ns-%d"]}}],"to":[{"operation":{"methods":["GET"],"paths":["/api/%d/*"]}}]}`, i, i))
	}
	e := mustCompile(b, Options{}, ap(b, "foo/by-ns", `{"rules":[`+strings.Join(rules, ",")+`]}`))
	r := httpReq(from("cluster.local/ns/ns-99/sa/x"), path("/api/99/x"))
	if d := e.Decide(r); !d.Allow {
		b.Fatalf("setup: %+v", d)
	}
	b.ReportAllocs()
	for b.Loop() {
		e.Decide(r)
	}
}
