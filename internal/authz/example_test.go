package authz_test

import (
	"fmt"
	"net/netip"

	"google.golang.org/protobuf/encoding/protojson"
	securityv1beta1 "istio.io/api/security/v1beta1"

	"github.com/zmesh/zmesh/internal/authz"
	"github.com/zmesh/zmesh/internal/config"
)

func policy(ns, name, spec string) config.Resource {
	p := &securityv1beta1.AuthorizationPolicy{}
	if err := protojson.Unmarshal([]byte(spec), p); err != nil {
		panic(err)
	}
	return config.Resource{Meta: config.Meta{Kind: config.KindAuthorizationPolicy, Namespace: ns, Name: name}, Spec: p}
}

// The proxy's sequence: select and compile once per config push, then ask
// the CUSTOM provider if one is named, then decide each request. The last
// request is a plain TCP connection: as in Istio, the CUSTOM and DENY rules
// lose their HTTP-only fields and so match it, while nothing in an ALLOW
// rule is ever ignored.
func Example() {
	all := []config.Resource{
		policy("foo", "allow-sleep", `{"selector":{"matchLabels":{"app":"httpbin"}},
			"rules":[{"from":[{"source":{"principals":["cluster.local/ns/bar/sa/sleep"]}}]}]}`),
		policy("foo", "deny-admin", `{"action":"DENY","rules":[{"to":[{"operation":{"paths":["/admin*"]}}]}]}`),
		policy("istio-system", "ext-authz", `{"action":"CUSTOM","provider":{"name":"opa"},
			"rules":[{"to":[{"operation":{"methods":["DELETE"]}}]}]}`),
	}
	w := authz.Workload{Namespace: "foo", Labels: map[string]string{"app": "httpbin"}}
	engine, err := authz.Compile(authz.Select(all, w, "istio-system"), authz.Options{PathNormalization: authz.NormalizeMergeSlashes})
	if err != nil {
		panic(err)
	}

	for _, r := range []*authz.Request{
		{SourcePrincipal: "cluster.local/ns/bar/sa/sleep", HTTP: true, Method: "GET", Path: "/headers"},
		{SourcePrincipal: "cluster.local/ns/bar/sa/sleep", HTTP: true, Method: "GET", Path: "//admin/./users"},
		{SourcePrincipal: "cluster.local/ns/baz/sa/other", HTTP: true, Method: "GET", Path: "/headers"},
		{SourcePrincipal: "cluster.local/ns/bar/sa/sleep", HTTP: true, Method: "DELETE", Path: "/data"},
		{SourcePrincipal: "cluster.local/ns/bar/sa/sleep", SourceIP: netip.MustParseAddr("10.0.0.1"), DestinationPort: 8000},
	} {
		if provider, ok := engine.Custom(r); ok {
			fmt.Println("ask", provider)
			r.CustomVerdict = authz.CustomAllow // the provider's answer
		}
		d := engine.Decide(r)
		fmt.Println(d.Allow, d.Reason)
	}
	// Output:
	// true allowed by policy foo/allow-sleep rule 0
	// false denied by policy foo/deny-admin rule 0
	// false no ALLOW policy matched
	// ask opa
	// true allowed by policy foo/allow-sleep rule 0
	// ask opa
	// false denied by policy foo/deny-admin rule 0
}
