package authz

import (
	"github.com/zmesh/zmesh/internal/config"
	"strings"
	"testing"
)

// pol is a policy in a test table: "ns/name", its spec as JSON, and
// optional annotations as key, value pairs.
type pol struct {
	key, spec string
	ann       []string
}

type decideCase struct {
	name     string // the Istio rule the case checks, as a sentence
	opts     Options
	policies []pol
	req      *Request
	allow    bool
	policy   string // deciding policy, "" for a default decision
	rule     int    // deciding rule when policy != ""
	reason   string // substring of the reason, when set
}

func runDecideCases(t *testing.T, cases []decideCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var rs = make([]config.Resource, 0, len(tc.policies))
			for _, p := range tc.policies {
				rs = append(rs, ap(t, p.key, p.spec, p.ann...))
			}
			e := mustCompile(t, tc.opts, rs...)
			d := e.Decide(tc.req)
			if d.Allow != tc.allow {
				t.Errorf("Allow = %v, want %v (reason %q)", d.Allow, tc.allow, d.Reason)
			}
			if d.Policy != tc.policy {
				t.Errorf("Policy = %q, want %q (reason %q)", d.Policy, tc.policy, d.Reason)
			}
			if tc.policy != "" && d.Rule != tc.rule {
				t.Errorf("Rule = %d, want %d", d.Rule, tc.rule)
			}
			if tc.policy == "" && d.Rule != -1 {
				t.Errorf("Rule = %d, want -1 for a default decision", d.Rule)
			}
			if tc.reason != "" && !strings.Contains(d.Reason, tc.reason) {
				t.Errorf("Reason = %q, want it to contain %q", d.Reason, tc.reason)
			}
		})
	}
}

// Istio reference, "Authorization Policy": evaluation order and actions.
func TestDecideActions(t *testing.T) {
	allowSleep := pol{"foo/allow-sleep", `{"rules":[{"from":[{"source":{"principals":["cluster.local/ns/bar/sa/sleep"]}}]}]}`, nil}
	denyGet := pol{"foo/deny-get", `{"action":"DENY","rules":[{"to":[{"operation":{"methods":["GET"]}}]}]}`, nil}
	runDecideCases(t, []decideCase{
		{name: "no policy for the workload: allow", req: httpReq(), allow: true, reason: reasonNoAllowPolicies},
		{name: "no ALLOW policy, no DENY match: allow",
			policies: []pol{denyGet}, req: httpReq(method("POST")), allow: true, reason: reasonNoAllowPolicies},
		{name: "a matching DENY policy denies",
			policies: []pol{denyGet}, req: httpReq(), allow: false, policy: "foo/deny-get", rule: 0,
			reason: "denied by policy foo/deny-get rule 0"},
		{name: "DENY is evaluated before ALLOW: both match, deny wins",
			policies: []pol{allowSleep, denyGet}, req: httpReq(), allow: false, policy: "foo/deny-get"},
		{name: "ALLOW policies exist and one matches: allow",
			policies: []pol{allowSleep}, req: httpReq(), allow: true, policy: "foo/allow-sleep", rule: 0,
			reason: "allowed by policy foo/allow-sleep rule 0"},
		{name: "ALLOW policies exist and none matches: deny",
			policies: []pol{allowSleep}, req: httpReq(from("cluster.local/ns/bar/sa/other")), allow: false, reason: reasonNoAllowMatched},
		{name: "action defaults to ALLOW",
			policies: []pol{{"foo/p", `{"rules":[{"to":[{"operation":{"methods":["POST"]}}]}]}`, nil}}, req: httpReq(), allow: false},
		{name: "spec {} is allow-nothing: denies every request",
			policies: []pol{{"foo/allow-nothing", `{}`, nil}}, req: httpReq(), allow: false, reason: reasonNoAllowMatched},
		{name: "rules [{}] is allow-all: an empty rule always matches",
			policies: []pol{{"foo/allow-all", `{"rules":[{}]}`, nil}}, req: httpReq(), allow: true, policy: "foo/allow-all", rule: 0},
		{name: "allow-all and allow-nothing together: allow (any ALLOW match allows)",
			policies: []pol{{"foo/allow-nothing", `{}`, nil}, {"foo/allow-all", `{"rules":[{}]}`, nil}}, req: httpReq(), allow: true, policy: "foo/allow-all"},
		{name: "DENY without rules never matches",
			policies: []pol{{"foo/deny-none", `{"action":"DENY"}`, nil}}, req: httpReq(), allow: true},
		{name: "DENY with rules [{}] denies everything",
			policies: []pol{{"foo/deny-all", `{"action":"DENY","rules":[{}]}`, nil}}, req: httpReq(), allow: false, policy: "foo/deny-all"},
		{name: "rules are OR'd: the second rule matches and is reported",
			policies: []pol{{"foo/p", `{"rules":[{"to":[{"operation":{"methods":["POST"]}}]},{"to":[{"operation":{"paths":["/headers"]}}]}]}`, nil}},
			req:      httpReq(), allow: true, policy: "foo/p", rule: 1},
		{name: "AUDIT never changes the decision",
			policies: []pol{{"foo/audit", `{"action":"AUDIT","rules":[{}]}`, nil}}, req: httpReq(), allow: true, reason: reasonNoAllowPolicies},
		{name: "AUDIT does not count as an ALLOW policy",
			policies: []pol{{"foo/audit", `{"action":"AUDIT","rules":[{"to":[{"operation":{"methods":["POST"]}}]}]}`, nil}}, req: httpReq(), allow: true},
	})
}

func TestDecideAuditMarksRequest(t *testing.T) {
	e := mustCompile(t, Options{},
		ap(t, "foo/audit-profile", `{"action":"AUDIT","rules":[{"to":[{"operation":{"methods":["GET"],"paths":["/user/profile/*"]}}]}]}`))
	d := e.Decide(httpReq(path("/user/profile/1")))
	if !d.Allow || !d.Audit || d.AuditPolicy != "foo/audit-profile" {
		t.Errorf("matching AUDIT: got %+v, want allowed and audited by foo/audit-profile", d)
	}
	if d := e.Decide(httpReq(path("/other"))); d.Audit {
		t.Errorf("non-matching AUDIT marked the request: %+v", d)
	}
}

// Istio reference, "Rule" and "Source": how values and fields combine.
func TestDecideMatchingSemantics(t *testing.T) {
	runDecideCases(t, []decideCase{
		{name: "exact principal matches",
			policies: []pol{{"foo/p", `{"rules":[{"from":[{"source":{"principals":["cluster.local/ns/bar/sa/sleep"]}}]}]}`, nil}},
			req:      httpReq(), allow: true, policy: "foo/p"},
		{name: "prefix value abc* matches abc and abcd",
			policies: []pol{{"foo/p", `{"rules":[{"from":[{"source":{"principals":["cluster.local/ns/bar/*"]}}]}]}`, nil}},
			req:      httpReq(), allow: true, policy: "foo/p"},
		{name: "suffix value *abc matches xabc",
			policies: []pol{{"foo/p", `{"rules":[{"from":[{"source":{"principals":["*/sa/sleep"]}}]}]}`, nil}},
			req:      httpReq(), allow: true, policy: "foo/p"},
		{name: "presence value * matches any non-empty principal",
			policies: []pol{{"foo/p", `{"rules":[{"from":[{"source":{"principals":["*"]}}]}]}`, nil}},
			req:      httpReq(), allow: true, policy: "foo/p"},
		{name: "presence value * does not match a plaintext peer (no principal)",
			policies: []pol{{"foo/p", `{"rules":[{"from":[{"source":{"principals":["*"]}}]}]}`, nil}},
			req:      httpReq(from("")), allow: false},
		{name: "notPrincipals [*] matches a plaintext peer: the deny-plaintext idiom",
			policies: []pol{{"foo/deny-plaintext", `{"action":"DENY","rules":[{"from":[{"source":{"notPrincipals":["*"]}}]}]}`, nil}},
			req:      httpReq(from("")), allow: false, policy: "foo/deny-plaintext"},
		{name: "notPrincipals [*] does not match an mTLS peer",
			policies: []pol{{"foo/deny-plaintext", `{"action":"DENY","rules":[{"from":[{"source":{"notPrincipals":["*"]}}]}]}`, nil}},
			req:      httpReq(), allow: true},
		{name: "values within a field are OR'd",
			policies: []pol{{"foo/p", `{"rules":[{"to":[{"operation":{"methods":["POST","GET"]}}]}]}`, nil}},
			req:      httpReq(), allow: true, policy: "foo/p"},
		{name: "fields within a source are AND'd: principal matches, namespace does not",
			policies: []pol{{"foo/p", `{"rules":[{"from":[{"source":{"principals":["cluster.local/ns/bar/sa/sleep"],"namespaces":["prod"]}}]}]}`, nil}},
			req:      httpReq(), allow: false},
		{name: "positive and negative fields are AND'd: principals prefix minus notPrincipals",
			policies: []pol{{"foo/p", `{"rules":[{"from":[{"source":{"principals":["cluster.local/ns/bar/*"],"notPrincipals":["cluster.local/ns/bar/sa/sleep"]}}]}]}`, nil}},
			req:      httpReq(), allow: false},
		{name: "from entries are OR'd",
			policies: []pol{{"foo/p", `{"rules":[{"from":[{"source":{"namespaces":["prod"]}},{"source":{"namespaces":["bar"]}}]}]}`, nil}},
			req:      httpReq(), allow: true, policy: "foo/p"},
		{name: "to entries are OR'd",
			policies: []pol{{"foo/p", `{"rules":[{"to":[{"operation":{"methods":["POST"]}},{"operation":{"paths":["/headers"]}}]}]}`, nil}},
			req:      httpReq(), allow: true, policy: "foo/p"},
		{name: "from, to and when are AND'd within a rule",
			policies: []pol{{"foo/p", `{"rules":[{"from":[{"source":{"namespaces":["bar"]}}],"to":[{"operation":{"methods":["GET"]}}],"when":[{"key":"request.headers[X-Token]","values":["admin"]}]}]}`, nil}},
			req:      httpReq(), allow: false},
		{name: "Istio's reference example: sleep may GET /info*",
			policies: []pol{{"foo/httpbin", refExample, nil}},
			req: httpReq(from("cluster.local/ns/default/sa/sleep"), path("/info/x"),
				jwt("https://accounts.google.com/u1", map[string]any{"iss": "https://accounts.google.com"})),
			allow: true, policy: "foo/httpbin"},
		{name: "Istio's reference example: namespace test may POST /data but not /data2",
			policies: []pol{{"foo/httpbin", refExample, nil}},
			req: httpReq(from("cluster.local/ns/test/sa/any"), method("POST"), path("/data2"),
				jwt("https://accounts.google.com/u1", map[string]any{"iss": "https://accounts.google.com"})),
			allow: false},
		{name: "Istio's reference example: without the JWT issuer the when condition fails",
			policies: []pol{{"foo/httpbin", refExample, nil}},
			req:      httpReq(from("cluster.local/ns/default/sa/sleep"), path("/info")),
			allow:    false},
		{name: "a 'spiffe://' prefix on the peer principal is tolerated",
			policies: []pol{{"foo/p", `{"rules":[{"from":[{"source":{"principals":["cluster.local/ns/bar/sa/sleep"]}}]}]}`, nil}},
			req:      httpReq(from("spiffe://cluster.local/ns/bar/sa/sleep")), allow: true, policy: "foo/p"},
		{name: "a value *abc* is the suffix 'abc*', as in Istio (literal star)",
			policies: []pol{{"foo/p", `{"rules":[{"to":[{"operation":{"paths":["*head*"]}}]}]}`, nil}},
			req:      httpReq(path("/headers")), allow: false},
	})
}

const refExample = `{"action":"ALLOW","rules":[{
  "from":[{"source":{"principals":["cluster.local/ns/default/sa/sleep"]}},{"source":{"namespaces":["test"]}}],
  "to":[{"operation":{"methods":["GET"],"paths":["/info*"]}},{"operation":{"methods":["POST"],"paths":["/data"]}}],
  "when":[{"key":"request.auth.claims[iss]","values":["https://accounts.google.com"]}]}]}`

// Istio reference, "Source": namespaces, service accounts, trust domains,
// IP blocks.
func TestDecideSource(t *testing.T) {
	runDecideCases(t, []decideCase{
		{name: "namespaces match the namespace of the peer principal",
			policies: []pol{{"foo/p", `{"rules":[{"from":[{"source":{"namespaces":["bar"]}}]}]}`, nil}},
			req:      httpReq(), allow: true, policy: "foo/p"},
		{name: "namespaces never match a plaintext peer",
			policies: []pol{{"foo/p", `{"rules":[{"from":[{"source":{"namespaces":["*"]}}]}]}`, nil}},
			req:      httpReq(from("")), allow: false},
		{name: "notNamespaces matches a plaintext peer",
			policies: []pol{{"foo/deny", `{"action":"DENY","rules":[{"from":[{"source":{"notNamespaces":["bar"]}}]}]}`, nil}},
			req:      httpReq(from("")), allow: false, policy: "foo/deny"},
		{name: "namespace prefix ba* matches bar",
			policies: []pol{{"foo/p", `{"rules":[{"from":[{"source":{"namespaces":["ba*"]}}]}]}`, nil}},
			req:      httpReq(), allow: true, policy: "foo/p"},
		{name: "namespace bar does not match the namespace barn",
			policies: []pol{{"foo/p", `{"rules":[{"from":[{"source":{"namespaces":["bar"]}}]}]}`, nil}},
			req:      httpReq(from("cluster.local/ns/barn/sa/sleep")), allow: false},
		{name: "serviceAccounts NS/SA matches that account in any trust domain",
			policies: []pol{{"foo/p", `{"rules":[{"from":[{"source":{"serviceAccounts":["bar/sleep"]}}]}]}`, nil}},
			req:      httpReq(from("other.td/ns/bar/sa/sleep")), allow: true, policy: "foo/p"},
		{name: "serviceAccounts SA means the policy's namespace",
			policies: []pol{{"foo/p", `{"rules":[{"from":[{"source":{"serviceAccounts":["sleep"]}}]}]}`, nil}},
			req:      httpReq(), allow: false},
		{name: "serviceAccounts SA matches in the policy's namespace",
			policies: []pol{{"bar/p", `{"rules":[{"from":[{"source":{"serviceAccounts":["sleep"]}}]}]}`, nil}},
			req:      httpReq(), allow: true, policy: "bar/p"},
		{name: "trustDomains match the peer's trust domain",
			policies: []pol{{"foo/p", `{"rules":[{"from":[{"source":{"trustDomains":["cluster.local"]}}]}]}`, nil}},
			req:      httpReq(), allow: true, policy: "foo/p"},
		{name: "notTrustDomains exclude the peer's trust domain",
			policies: []pol{{"foo/p", `{"rules":[{"from":[{"source":{"notTrustDomains":["cluster.*"]}}]}]}`, nil}},
			req:      httpReq(), allow: false},
		{name: "ipBlocks accept a CIDR",
			policies: []pol{{"foo/p", `{"rules":[{"from":[{"source":{"ipBlocks":["10.1.0.0/16"]}}]}]}`, nil}},
			req:      httpReq(), allow: true, policy: "foo/p"},
		{name: "ipBlocks accept a single IP",
			policies: []pol{{"foo/p", `{"rules":[{"from":[{"source":{"ipBlocks":["10.1.2.4"]}}]}]}`, nil}},
			req:      httpReq(), allow: false},
		{name: "notIpBlocks exclude the source IP",
			policies: []pol{{"foo/deny", `{"action":"DENY","rules":[{"from":[{"source":{"notIpBlocks":["192.168.0.0/16"]}}]}]}`, nil}},
			req:      httpReq(), allow: false, policy: "foo/deny"},
		{name: "ipBlocks match an IPv4-mapped IPv6 source",
			policies: []pol{{"foo/p", `{"rules":[{"from":[{"source":{"ipBlocks":["10.1.2.3"]}}]}]}`, nil}},
			req:      httpReq(srcIP("::ffff:10.1.2.3")), allow: true, policy: "foo/p"},
		{name: "remoteIpBlocks match the X-Forwarded-For client, not the peer",
			policies: []pol{{"foo/p", `{"rules":[{"from":[{"source":{"remoteIpBlocks":["203.0.113.0/24"]}}]}]}`, nil}},
			req:      httpReq(remoteIP("203.0.113.7")), allow: true, policy: "foo/p"},
		{name: "remoteIpBlocks fall back to the source IP when no remote IP is known",
			policies: []pol{{"foo/p", `{"rules":[{"from":[{"source":{"remoteIpBlocks":["10.1.2.3"]}}]}]}`, nil}},
			req:      httpReq(), allow: true, policy: "foo/p"},
		{name: "notRemoteIpBlocks exclude the remote IP",
			policies: []pol{{"foo/p", `{"rules":[{"from":[{"source":{"notRemoteIpBlocks":["203.0.113.0/24"]}}]}]}`, nil}},
			req:      httpReq(remoteIP("203.0.113.7")), allow: false},
		{name: "requestPrincipals match iss/sub of the validated JWT",
			policies: []pol{{"foo/p", `{"rules":[{"from":[{"source":{"requestPrincipals":["issuer.example.com/*"]}}]}]}`, nil}},
			req:      httpReq(jwt("issuer.example.com/alice", nil)), allow: true, policy: "foo/p"},
		{name: "requestPrincipals [*] requires a JWT: a request without one is denied",
			policies: []pol{{"foo/require-jwt", `{"rules":[{"from":[{"source":{"requestPrincipals":["*"]}}]}]}`, nil}},
			req:      httpReq(), allow: false},
		{name: "notRequestPrincipals [*] denies requests without a JWT",
			policies: []pol{{"foo/deny-no-jwt", `{"action":"DENY","rules":[{"from":[{"source":{"notRequestPrincipals":["*"]}}]}]}`, nil}},
			req:      httpReq(), allow: false, policy: "foo/deny-no-jwt"},
	})
}

// Istio reference, "Source": principals and trust domain migration.
func TestDecideTrustDomainAliases(t *testing.T) {
	migrating := Options{TrustDomain: "new.td", TrustDomainAliases: []string{"old.td"}}
	allowOld := pol{"foo/p", `{"rules":[{"from":[{"source":{"principals":["old.td/ns/bar/sa/sleep"]}}]}]}`, nil}
	allowLocal := pol{"foo/p", `{"rules":[{"from":[{"source":{"principals":["cluster.local/ns/bar/sa/sleep"]}}]}]}`, nil}
	runDecideCases(t, []decideCase{
		{name: "a principal written with an alias matches a peer of the mesh trust domain",
			opts: migrating, policies: []pol{allowOld}, req: httpReq(from("new.td/ns/bar/sa/sleep")), allow: true, policy: "foo/p"},
		{name: "a principal written with an alias matches a peer of that alias",
			opts: migrating, policies: []pol{allowOld}, req: httpReq(from("old.td/ns/bar/sa/sleep")), allow: true, policy: "foo/p"},
		{name: "cluster.local in a policy stands for the local trust domain and its aliases",
			opts: migrating, policies: []pol{allowLocal}, req: httpReq(from("old.td/ns/bar/sa/sleep")), allow: true, policy: "foo/p"},
		{name: "a foreign trust domain is not expanded",
			opts: migrating, policies: []pol{allowOld}, req: httpReq(from("evil.td/ns/bar/sa/sleep")), allow: false},
		{name: "prefix principals are expanded too",
			opts:     migrating,
			policies: []pol{{"foo/p", `{"rules":[{"from":[{"source":{"principals":["old.td/ns/bar/*"]}}]}]}`, nil}},
			req:      httpReq(from("new.td/ns/bar/sa/x")), allow: true, policy: "foo/p"},
		{name: "notPrincipals are expanded: a DENY on the old name denies the new one",
			opts:     migrating,
			policies: []pol{{"foo/p", `{"rules":[{"from":[{"source":{"notPrincipals":["old.td/ns/bar/sa/sleep"]}}]}]}`, nil}},
			req:      httpReq(from("new.td/ns/bar/sa/sleep")), allow: false},
		{name: "source.principal conditions are expanded",
			opts:     migrating,
			policies: []pol{{"foo/p", `{"rules":[{"when":[{"key":"source.principal","values":["old.td/ns/bar/sa/sleep"]}]}]}`, nil}},
			req:      httpReq(from("new.td/ns/bar/sa/sleep")), allow: true, policy: "foo/p"},
		{name: "with trust domain td1 and no aliases, cluster.local means td1",
			opts: Options{TrustDomain: "td1"}, policies: []pol{allowLocal}, req: httpReq(from("td1/ns/bar/sa/sleep")), allow: true, policy: "foo/p"},
	})
}

// Istio reference, "Operation".
func TestDecideOperation(t *testing.T) {
	runDecideCases(t, []decideCase{
		{name: "hosts match case-insensitively",
			policies: []pol{{"foo/p", `{"rules":[{"to":[{"operation":{"hosts":["HTTPBIN.foo.svc.cluster.local"]}}]}]}`, nil}},
			req:      httpReq(), allow: true, policy: "foo/p"},
		{name: "hosts match exactly: a port in the Host header needs host:* (Istio security best practices)",
			policies: []pol{{"foo/p", `{"rules":[{"to":[{"operation":{"hosts":["httpbin.foo.svc.cluster.local"]}}]}]}`, nil}},
			req:      httpReq(host("httpbin.foo.svc.cluster.local:8000")), allow: false},
		{name: "hosts with a :* prefix value match any port",
			policies: []pol{{"foo/p", `{"rules":[{"to":[{"operation":{"hosts":["httpbin.foo.svc.cluster.local:*"]}}]}]}`, nil}},
			req:      httpReq(host("httpbin.foo.svc.cluster.local:8000")), allow: true, policy: "foo/p"},
		{name: "hosts suffix match is case-insensitive",
			policies: []pol{{"foo/p", `{"rules":[{"to":[{"operation":{"hosts":["*.FOO.svc.cluster.local"]}}]}]}`, nil}},
			req:      httpReq(), allow: true, policy: "foo/p"},
		{name: "notHosts exclude a host",
			policies: []pol{{"foo/deny", `{"action":"DENY","rules":[{"to":[{"operation":{"notHosts":["httpbin.foo.svc.cluster.local"]}}]}]}`, nil}},
			req:      httpReq(host("evil.example.com")), allow: false, policy: "foo/deny"},
		{name: "ports match the destination port",
			policies: []pol{{"foo/p", `{"rules":[{"to":[{"operation":{"ports":["8000"]}}]}]}`, nil}},
			req:      httpReq(), allow: true, policy: "foo/p"},
		{name: "notPorts exclude the destination port",
			policies: []pol{{"foo/p", `{"rules":[{"to":[{"operation":{"notPorts":["8000"]}}]}]}`, nil}},
			req:      httpReq(), allow: false},
		{name: "methods are case-sensitive",
			policies: []pol{{"foo/p", `{"rules":[{"to":[{"operation":{"methods":["get"]}}]}]}`, nil}},
			req:      httpReq(), allow: false},
		{name: "notMethods exclude a method",
			policies: []pol{{"foo/p", `{"rules":[{"to":[{"operation":{"notMethods":["DELETE"]}}]}]}`, nil}},
			req:      httpReq(method("DELETE")), allow: false},
		{name: "a method that is not upper case is rejected (Istio normalization: 400)",
			policies: []pol{}, req: httpReq(method("get")), allow: false, reason: reasonBadMethod},
		{name: "paths are matched without the query string",
			policies: []pol{{"foo/p", `{"rules":[{"to":[{"operation":{"paths":["/headers"]}}]}]}`, nil}},
			req:      httpReq(path("/headers?x=1")), allow: true, policy: "foo/p"},
		{name: "paths prefix /api/* does not match /api (no trailing slash)",
			policies: []pol{{"foo/p", `{"rules":[{"to":[{"operation":{"paths":["/api/*"]}}]}]}`, nil}},
			req:      httpReq(path("/api")), allow: false},
		{name: "paths are case-sensitive",
			policies: []pol{{"foo/deny", `{"action":"DENY","rules":[{"to":[{"operation":{"paths":["/admin"]}}]}]}`, nil}},
			req:      httpReq(path("/Admin")), allow: true},
		{name: "notPaths exclude a path",
			policies: []pol{{"foo/p", `{"rules":[{"to":[{"operation":{"notPaths":["/admin*"]}}]}]}`, nil}},
			req:      httpReq(path("/admin/x")), allow: false},
		{name: "path template {*} matches exactly one segment",
			policies: []pol{{"foo/p", `{"rules":[{"to":[{"operation":{"paths":["/foo/{*}"]}}]}]}`, nil}},
			req:      httpReq(path("/foo/bar")), allow: true, policy: "foo/p"},
		{name: "path template {*} does not match two segments",
			policies: []pol{{"foo/p", `{"rules":[{"to":[{"operation":{"paths":["/foo/{*}"]}}]}]}`, nil}},
			req:      httpReq(path("/foo/bar/baz")), allow: false},
		{name: "path template {*}/bar/{**} matches /foo/buzz/bar/baz",
			policies: []pol{{"foo/p", `{"rules":[{"to":[{"operation":{"paths":["/foo/{*}/bar/{**}"]}}]}]}`, nil}},
			req:      httpReq(path("/foo/buzz/bar/baz")), allow: true, policy: "foo/p"},
		{name: "path template {**}/ matches /foo// and /foo/bar/ but not /foo/bar",
			policies: []pol{{"foo/p", `{"rules":[{"to":[{"operation":{"paths":["/foo/{**}/"]}}]}]}`, nil}},
			req:      httpReq(path("/foo/bar")), allow: false},
		{name: "path template {**}/ matches /foo/bar/",
			policies: []pol{{"foo/p", `{"rules":[{"to":[{"operation":{"paths":["/foo/{**}/"]}}]}]}`, nil}},
			req:      httpReq(path("/foo/bar/")), allow: true, policy: "foo/p"},
	})
}

// Istio "Authorization Policy Conditions": every supported key.
func TestDecideConditions(t *testing.T) {
	when := func(key string, values, notValues string) pol {
		spec := `{"rules":[{"when":[{"key":"` + key + `"`
		if values != "" {
			spec += `,"values":` + values
		}
		if notValues != "" {
			spec += `,"notValues":` + notValues
		}
		return pol{"foo/p", spec + `}]}]}`, nil}
	}
	claims := map[string]any{
		"iss":    "issuer.example.com",
		"groups": []any{"dev", "admin"},
		"nested": map[string]any{"key1": map[string]any{"key2": "v"}, "list": []string{"x", "y"}},
		"admin":  true,
	}
	auth := func(r *Request) {
		r.RequestPrincipal, r.Audiences, r.Presenter, r.Claims = "issuer.example.com/alice", []string{"a1", "a2"}, "client.example.com", claims
	}
	runDecideCases(t, []decideCase{
		{name: "request.headers[...] matches a header value", policies: []pol{when("request.headers[User-Agent]", `["Mozilla/*"]`, "")},
			req: httpReq(headers("User-Agent", "Mozilla/5.0")), allow: true, policy: "foo/p"},
		{name: "request.headers names are case-insensitive", policies: []pol{when("request.headers[x-TOKEN]", `["admin"]`, "")},
			req: httpReq(headers("X-Token", "admin")), allow: true, policy: "foo/p"},
		{name: "request.headers values are case-sensitive", policies: []pol{when("request.headers[X-Token]", `["admin"]`, "")},
			req: httpReq(headers("X-Token", "Admin")), allow: false},
		{name: "request.headers: duplicate headers are matched joined by commas", policies: []pol{when("request.headers[X-Token]", `["a,b"]`, "")},
			req: httpReq(headers("X-Token", "a", "X-Token", "b")), allow: true, policy: "foo/p"},
		{name: "request.headers [*] matches a present header, even empty", policies: []pol{when("request.headers[X-Token]", `["*"]`, "")},
			req: httpReq(headers("X-Token", "")), allow: true, policy: "foo/p"},
		{name: "request.headers [*] does not match an absent header", policies: []pol{when("request.headers[X-Token]", `["*"]`, "")},
			req: httpReq(), allow: false},
		{name: "request.headers notValues hold for an absent header", policies: []pol{when("request.headers[X-Token]", "", `["admin"]`)},
			req: httpReq(), allow: true, policy: "foo/p"},
		{name: "request.headers[:authority] reads the host", policies: []pol{when("request.headers[:authority]", `["httpbin.foo*"]`, "")},
			req: httpReq(), allow: true, policy: "foo/p"},
		{name: "source.ip accepts IPs and CIDRs", policies: []pol{when("source.ip", `["10.9.0.0/16","10.1.2.3"]`, "")},
			req: httpReq(), allow: true, policy: "foo/p"},
		{name: "remote.ip notValues", policies: []pol{when("remote.ip", "", `["203.0.113.0/24"]`)},
			req: httpReq(remoteIP("203.0.113.9")), allow: false},
		{name: "source.namespace", policies: []pol{when("source.namespace", `["bar"]`, "")},
			req: httpReq(), allow: true, policy: "foo/p"},
		{name: "source.principal", policies: []pol{when("source.principal", `["cluster.local/ns/bar/sa/sleep"]`, "")},
			req: httpReq(), allow: true, policy: "foo/p"},
		{name: "request.auth.principal", policies: []pol{when("request.auth.principal", `["issuer.example.com/alice"]`, "")},
			req: httpReq(auth), allow: true, policy: "foo/p"},
		{name: "request.auth.audiences match if any audience matches", policies: []pol{when("request.auth.audiences", `["a2"]`, "")},
			req: httpReq(auth), allow: true, policy: "foo/p"},
		{name: "request.auth.presenter", policies: []pol{when("request.auth.presenter", `["*.example.com"]`, "")},
			req: httpReq(auth), allow: true, policy: "foo/p"},
		{name: "request.auth.claims[iss] matches a string claim", policies: []pol{when("request.auth.claims[iss]", `["issuer.example.com"]`, "")},
			req: httpReq(auth), allow: true, policy: "foo/p"},
		{name: "request.auth.claims[groups] matches if any list element matches", policies: []pol{when("request.auth.claims[groups]", `["admin"]`, "")},
			req: httpReq(auth), allow: true, policy: "foo/p"},
		{name: "request.auth.claims notValues exclude any list element", policies: []pol{when("request.auth.claims[groups]", "", `["admin"]`)},
			req: httpReq(auth), allow: false},
		{name: "request.auth.claims[a][b] reads nested claims", policies: []pol{when("request.auth.claims[nested][key1][key2]", `["v"]`, "")},
			req: httpReq(auth), allow: true, policy: "foo/p"},
		{name: "request.auth.claims nested list", policies: []pol{when("request.auth.claims[nested][list]", `["y"]`, "")},
			req: httpReq(auth), allow: true, policy: "foo/p"},
		{name: "request.auth.claims of non-string type never match", policies: []pol{when("request.auth.claims[admin]", `["true"]`, "")},
			req: httpReq(auth), allow: false},
		{name: "request.auth.claims without a JWT do not match", policies: []pol{when("request.auth.claims[iss]", `["*"]`, "")},
			req: httpReq(), allow: false},
		{name: "destination.ip", policies: []pol{when("destination.ip", `["10.9.9.9"]`, "")},
			req: httpReq(), allow: true, policy: "foo/p"},
		{name: "destination.port", policies: []pol{when("destination.port", `["80","8000"]`, "")},
			req: httpReq(), allow: true, policy: "foo/p"},
		{name: "connection.sni", policies: []pol{when("connection.sni", `["outbound_.8000_._.httpbin.foo.svc.cluster.local"]`, "")},
			req: httpReq(func(r *Request) { r.SNI = "outbound_.8000_._.httpbin.foo.svc.cluster.local" }), allow: true, policy: "foo/p"},
		{name: "values and notValues of one condition are AND'd", policies: []pol{when("request.headers[X-Env]", `["prod*"]`, `["prod-eu"]`)},
			req: httpReq(headers("X-Env", "prod-eu")), allow: false},
	})
}

// Istio: "Authorization Policy for TCP workloads" and the reference's note on
// HTTP-only fields.
func TestDecideTCP(t *testing.T) {
	runDecideCases(t, []decideCase{
		{name: "ALLOW rule using an HTTP-only field (methods) never matches TCP",
			policies: []pol{{"foo/p", `{"rules":[{"to":[{"operation":{"methods":["GET"],"ports":["8000"]}}]}]}`, nil}},
			req:      tcpReq(), allow: false, reason: reasonNoAllowMatched},
		{name: "ALLOW rule with an HTTP-only field in any from entry is dropped for TCP",
			policies: []pol{{"foo/p", `{"rules":[{"from":[{"source":{"requestPrincipals":["*"]}},{"source":{"namespaces":["bar"]}}]}]}`, nil}},
			req:      tcpReq(), allow: false},
		{name: "ALLOW: other rules of the same policy still match TCP",
			policies: []pol{{"foo/p", `{"rules":[{"to":[{"operation":{"methods":["GET"]}}]},{"to":[{"operation":{"ports":["8000"]}}]}]}`, nil}},
			req:      tcpReq(), allow: true, policy: "foo/p", rule: 1},
		{name: "ALLOW rule with TCP fields only matches TCP",
			policies: []pol{{"foo/p", `{"rules":[{"from":[{"source":{"principals":["cluster.local/ns/bar/sa/sleep"]}}],"to":[{"operation":{"ports":["8000"]}}]}]}`, nil}},
			req:      tcpReq(), allow: true, policy: "foo/p"},
		{name: "DENY methods+ports on TCP: the method is ignored, all TCP on that port is denied",
			policies: []pol{{"foo/deny", `{"action":"DENY","rules":[{"to":[{"operation":{"methods":["POST"],"ports":["8000"]}}]}]}`, nil}},
			req:      tcpReq(), allow: false, policy: "foo/deny"},
		{name: "DENY methods+ports on TCP: another port is not denied",
			policies: []pol{{"foo/deny", `{"action":"DENY","rules":[{"to":[{"operation":{"methods":["POST"],"ports":["8000"]}}]}]}`, nil}},
			req:      tcpReq(port(9000)), allow: true},
		{name: "DENY with only HTTP-only fields denies all TCP traffic",
			policies: []pol{{"foo/deny", `{"action":"DENY","rules":[{"to":[{"operation":{"methods":["POST"]}}]}]}`, nil}},
			req:      tcpReq(), allow: false, policy: "foo/deny"},
		{name: "DENY: HTTP-only when conditions are ignored on TCP, the rest still applies",
			policies: []pol{{"foo/deny", `{"action":"DENY","rules":[{"from":[{"source":{"namespaces":["dev"]}}],"when":[{"key":"request.headers[X]","values":["y"]}]}]}`, nil}},
			req:      tcpReq(), allow: true},
		{name: "DENY with notRequestPrincipals on TCP: ignored, so it denies",
			policies: []pol{{"foo/deny", `{"action":"DENY","rules":[{"from":[{"source":{"notRequestPrincipals":["*"]}}]}]}`, nil}},
			req:      tcpReq(), allow: false, policy: "foo/deny"},
		{name: "the same DENY on HTTP with a JWT does not deny",
			policies: []pol{{"foo/deny", `{"action":"DENY","rules":[{"from":[{"source":{"notRequestPrincipals":["*"]}}]}]}`, nil}},
			req:      httpReq(jwt("iss/sub", nil)), allow: true},
	})
}

// Istio "Dry Run" task: dry-run policies are evaluated, never enforced.
func TestDecideDryRun(t *testing.T) {
	dry := []string{DryRunAnnotation, "true"}
	t.Run("a dry-run DENY does not deny; the would-be denial is reported", func(t *testing.T) {
		e := mustCompile(t, Options{}, ap(t, "foo/dry-deny", `{"action":"DENY","rules":[{"to":[{"operation":{"paths":["/headers"]}}]}]}`, dry...))
		d := e.Decide(httpReq())
		if !d.Allow || d.Policy != "" {
			t.Errorf("enforced decision: %+v, want a default allow", d)
		}
		if !d.DryRun.Evaluated || d.DryRun.Allow || d.DryRun.Policy != "foo/dry-deny" || d.DryRun.Rule != 0 {
			t.Errorf("dry-run: %+v, want denied by foo/dry-deny rule 0", d.DryRun)
		}
	})
	t.Run("a dry-run ALLOW does not make the workload deny-by-default", func(t *testing.T) {
		e := mustCompile(t, Options{}, ap(t, "foo/dry-allow", `{"rules":[{"to":[{"operation":{"methods":["POST"]}}]}]}`, dry...))
		d := e.Decide(httpReq())
		if !d.Allow || !d.DryRun.Evaluated || d.DryRun.Allow || d.DryRun.Reason != reasonNoAllowMatched {
			t.Errorf("got %+v, want allowed now and denied in dry-run", d)
		}
	})
	t.Run("dry-run together with enforced policies", func(t *testing.T) {
		e := mustCompile(t, Options{},
			ap(t, "foo/allow", `{"rules":[{}]}`),
			ap(t, "foo/dry-deny", `{"action":"DENY","rules":[{}]}`, dry...))
		d := e.Decide(httpReq())
		if !d.Allow || d.Policy != "foo/allow" || d.DryRun.Allow || d.DryRun.Policy != "foo/dry-deny" {
			t.Errorf("got %+v", d)
		}
	})
	t.Run("an annotation that is not a boolean leaves the policy enforced", func(t *testing.T) {
		e := mustCompile(t, Options{}, ap(t, "foo/deny", `{"action":"DENY","rules":[{}]}`, DryRunAnnotation, "yes please"))
		if d := e.Decide(httpReq()); d.Allow || d.DryRun.Evaluated {
			t.Errorf("got %+v, want enforced denial", d)
		}
	})
	t.Run("without dry-run policies DryRun is not evaluated", func(t *testing.T) {
		e := mustCompile(t, Options{}, ap(t, "foo/deny", `{"action":"DENY","rules":[{}]}`, DryRunAnnotation, "false"))
		if d := e.Decide(httpReq()); d.DryRun.Evaluated {
			t.Errorf("got %+v", d)
		}
	})
}

// Istio reference: CUSTOM is evaluated first and delegates to a provider.
func TestDecideCustom(t *testing.T) {
	extAuthz := ap(t, "foo/ext-authz", `{"action":"CUSTOM","provider":{"name":"my-authz"},"rules":[{"to":[{"operation":{"paths":["/admin/*"]}}]}]}`)
	allowAll := ap(t, "foo/allow-all", `{"rules":[{}]}`)
	denyAll := ap(t, "foo/deny-all", `{"action":"DENY","rules":[{}]}`)

	t.Run("Custom names the provider only for requests the policy matches", func(t *testing.T) {
		e := mustCompile(t, Options{}, extAuthz)
		if p, ok := e.Custom(httpReq(path("/admin/x"))); !ok || p != "my-authz" {
			t.Errorf("Custom(/admin/x) = %q, %v; want my-authz, true", p, ok)
		}
		if _, ok := e.Custom(httpReq()); ok {
			t.Errorf("Custom(/headers) asked for a provider")
		}
	})
	cases := []struct {
		name     string
		policies []config.Resource
		opts     Options
		verdict  CustomVerdict
		path     string
		allow    bool
		policy   string
	}{
		{"an unconsulted provider fails closed", []config.Resource{extAuthz}, Options{}, CustomUnknown, "/admin/x", false, "foo/ext-authz"},
		{"a provider's deny denies", []config.Resource{extAuthz, allowAll}, Options{}, CustomDeny, "/admin/x", false, "foo/ext-authz"},
		{"a provider's allow goes on to DENY and ALLOW: allowed", []config.Resource{extAuthz}, Options{}, CustomAllow, "/admin/x", true, ""},
		{"a provider's allow cannot bypass DENY", []config.Resource{extAuthz, denyAll}, Options{}, CustomAllow, "/admin/x", false, "foo/deny-all"},
		{"a request the CUSTOM policy does not match skips the provider", []config.Resource{extAuthz}, Options{}, CustomUnknown, "/public", true, ""},
		{"a provider unknown to the mesh denies what it matches", []config.Resource{extAuthz}, Options{Providers: []string{"other"}}, CustomAllow, "/admin/x", false, "foo/ext-authz"},
		{"two providers on one workload deny what CUSTOM matches",
			[]config.Resource{extAuthz, ap(t, "foo/ext2", `{"action":"CUSTOM","provider":{"name":"other"},"rules":[{}]}`)},
			Options{}, CustomAllow, "/admin/x", false, "foo/ext-authz"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := mustCompile(t, tc.opts, tc.policies...)
			d := e.Decide(httpReq(path(tc.path), func(r *Request) { r.CustomVerdict = tc.verdict }))
			if d.Allow != tc.allow || d.Policy != tc.policy {
				t.Errorf("got allow=%v policy=%q (%s); want allow=%v policy=%q", d.Allow, d.Policy, d.Reason, tc.allow, tc.policy)
			}
		})
	}
}

func TestDecideInvalidRequestsAreDenied(t *testing.T) {
	e := mustCompile(t, Options{}) // no policies: everything valid is allowed
	for _, p := range []string{"", "admin", "/a%00b", "/a%zz", "/a%4", "/a b", "/a\tb"} {
		if d := e.Decide(httpReq(path(p))); d.Allow {
			t.Errorf("path %q allowed; want rejected", p)
		}
	}
	if d := e.Decide(tcpReq()); !d.Allow {
		t.Errorf("TCP connection without a path rejected: %+v", d)
	}
}
