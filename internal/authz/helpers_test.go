package authz

import (
	"net/netip"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	securityv1beta1 "istio.io/api/security/v1beta1"

	"github.com/zmesh/zmesh/internal/config"
)

// ap builds an AuthorizationPolicy resource "ns/name" from the JSON form
// of its spec (the YAML a user writes, as JSON).
func ap(t testing.TB, key, specJSON string, annotations ...string) config.Resource {
	t.Helper()
	ns, name, ok := strings.Cut(key, "/")
	if !ok {
		t.Fatalf("policy key %q: want ns/name", key)
	}
	spec := &securityv1beta1.AuthorizationPolicy{}
	if err := protojson.Unmarshal([]byte(specJSON), spec); err != nil {
		t.Fatalf("policy %s: %v", key, err)
	}
	meta := config.Meta{Kind: config.KindAuthorizationPolicy, APIVersion: "security.istio.io/v1", Name: name, Namespace: ns}
	if len(annotations) > 0 {
		meta.Annotations = map[string]string{}
		for i := 0; i+1 < len(annotations); i += 2 {
			meta.Annotations[annotations[i]] = annotations[i+1]
		}
	}
	return config.Resource{Meta: meta, Spec: spec}
}

func mustCompile(t testing.TB, opts Options, ps ...config.Resource) *Engine {
	t.Helper()
	e, err := Compile(ps, opts)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return e
}

// Request builders: an mTLS HTTP request from sleep in bar, and a TCP one.
func httpReq(mut ...func(*Request)) *Request {
	r := &Request{
		SourcePrincipal: "cluster.local/ns/bar/sa/sleep",
		SourceIP:        netip.MustParseAddr("10.1.2.3"),
		DestinationIP:   netip.MustParseAddr("10.9.9.9"),
		DestinationPort: 8000,
		HTTP:            true,
		Method:          "GET",
		Host:            "httpbin.foo.svc.cluster.local",
		Path:            "/headers",
	}
	for _, m := range mut {
		m(r)
	}
	return r
}

func tcpReq(mut ...func(*Request)) *Request {
	r := httpReq(func(r *Request) { r.HTTP, r.Method, r.Host, r.Path = false, "", "", "" })
	for _, m := range mut {
		m(r)
	}
	return r
}

func from(principal string) func(*Request) {
	return func(r *Request) { r.SourcePrincipal = principal }
}
func method(m string) func(*Request) { return func(r *Request) { r.Method = m } }
func path(p string) func(*Request)   { return func(r *Request) { r.Path = p } }
func host(h string) func(*Request)   { return func(r *Request) { r.Host = h } }
func port(p uint16) func(*Request)   { return func(r *Request) { r.DestinationPort = p } }
func srcIP(ip string) func(*Request) {
	return func(r *Request) { r.SourceIP = netip.MustParseAddr(ip) }
}
func remoteIP(ip string) func(*Request) {
	return func(r *Request) { r.RemoteIP = netip.MustParseAddr(ip) }
}
func headers(kv ...string) func(*Request) {
	return func(r *Request) {
		h := HTTPHeader{}
		for i := 0; i+1 < len(kv); i += 2 {
			h[kv[i]] = append(h[kv[i]], kv[i+1])
		}
		r.Headers = h
	}
}
func jwt(principal string, claims map[string]any) func(*Request) {
	return func(r *Request) { r.RequestPrincipal, r.Claims = principal, claims }
}
