package xds_test

import (
	"reflect"
	"testing"

	securityv1beta1 "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/registry"
	"github.com/zmesh/zmesh/internal/xds"
)

var mesh = xds.Mesh{TrustDomain: "cluster.local", RootNamespace: "istio-system", DNSDomain: "cluster.local"}

func selector(kv ...string) *typev1beta1.WorkloadSelector {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return &typev1beta1.WorkloadSelector{MatchLabels: m}
}

func authz(ns, name string, sel *typev1beta1.WorkloadSelector) config.Resource {
	return config.Resource{Meta: config.Meta{Kind: config.KindAuthorizationPolicy, Name: name, Namespace: ns}, Spec: &securityv1beta1.AuthorizationPolicy{Selector: sel}}
}

func authzTargetRef(ns, name string) config.Resource {
	return config.Resource{Meta: config.Meta{Kind: config.KindAuthorizationPolicy, Name: name, Namespace: ns}, Spec: &securityv1beta1.AuthorizationPolicy{
		TargetRefs: []*typev1beta1.PolicyTargetReference{{Kind: "Gateway", Group: "gateway.networking.k8s.io", Name: "gw"}},
	}}
}

func requestAuthn(ns, name string, sel *typev1beta1.WorkloadSelector) config.Resource {
	return config.Resource{Meta: config.Meta{Kind: config.KindRequestAuthentication, Name: name, Namespace: ns}, Spec: &securityv1beta1.RequestAuthentication{Selector: sel}}
}

func peerAuthn(ns, name string, sel *typev1beta1.WorkloadSelector) config.Resource {
	return config.Resource{Meta: config.Meta{Kind: config.KindPeerAuthentication, Name: name, Namespace: ns}, Spec: &securityv1beta1.PeerAuthentication{Selector: sel}}
}

func proxy(ns string, labels map[string]string) xds.Proxy {
	return xds.Proxy{ID: ns + "/w", Workload: registry.Workload{Name: "w", Namespace: ns, Labels: labels}}
}

func keys(rs []config.Resource) []string {
	out := []string{}
	for _, r := range rs {
		out = append(out, r.Key())
	}
	return out
}

func TestBuildSelectsWhatAppliesToTheProxy(t *testing.T) {
	all := []config.Resource{
		peerAuthn("istio-system", "mesh", nil),
		peerAuthn("foo", "ns-wide", nil),
		peerAuthn("foo", "workload", selector("app", "other")),
		peerAuthn("bar", "elsewhere", nil),
		authz("istio-system", "root-all", nil),
		authz("istio-system", "root-httpbin", selector("app", "httpbin")),
		authz("istio-system", "root-other", selector("app", "other")),
		authz("foo", "ns-all", nil),
		authz("foo", "httpbin", selector("app", "httpbin")),
		authz("foo", "httpbin-v2", selector("app", "httpbin", "version", "v2")),
		authzTargetRef("foo", "via-target-ref"),
		authz("bar", "other-ns", nil),
		requestAuthn("istio-system", "root-jwt", nil),
		requestAuthn("foo", "httpbin-jwt", selector("app", "httpbin")),
		requestAuthn("foo", "other-jwt", selector("app", "other")),
		requestAuthn("bar", "bar-jwt", nil),
	}
	snap := config.NewSnapshot("1", all)

	tests := []struct {
		name      string
		proxy     xds.Proxy
		wantPeer  []string
		wantAuthz []string
		wantReqn  []string
	}{
		{
			name:      "workload matching selectors gets root, namespace and selected policies",
			proxy:     proxy("foo", map[string]string{"app": "httpbin", "version": "v1"}),
			wantPeer:  []string{"foo/ns-wide", "foo/workload", "istio-system/mesh"},
			wantAuthz: []string{"foo/httpbin", "foo/ns-all", "istio-system/root-all", "istio-system/root-httpbin"},
			wantReqn:  []string{"foo/httpbin-jwt", "istio-system/root-jwt"},
		},
		{
			name:      "every matchLabel must match: v2 selects the v2 policy too",
			proxy:     proxy("foo", map[string]string{"app": "httpbin", "version": "v2"}),
			wantPeer:  []string{"foo/ns-wide", "foo/workload", "istio-system/mesh"},
			wantAuthz: []string{"foo/httpbin", "foo/httpbin-v2", "foo/ns-all", "istio-system/root-all", "istio-system/root-httpbin"},
			wantReqn:  []string{"foo/httpbin-jwt", "istio-system/root-jwt"},
		},
		{
			name:      "workload without labels gets only no-selector policies",
			proxy:     proxy("foo", nil),
			wantPeer:  []string{"foo/ns-wide", "foo/workload", "istio-system/mesh"},
			wantAuthz: []string{"foo/ns-all", "istio-system/root-all"},
			wantReqn:  []string{"istio-system/root-jwt"},
		},
		{
			name:      "root-namespace selector applies across namespaces",
			proxy:     proxy("baz", map[string]string{"app": "httpbin"}),
			wantPeer:  []string{"istio-system/mesh"},
			wantAuthz: []string{"istio-system/root-all", "istio-system/root-httpbin"},
			wantReqn:  []string{"istio-system/root-jwt"},
		},
		{
			name:      "another namespace's policies never apply",
			proxy:     proxy("bar", map[string]string{"app": "httpbin"}),
			wantPeer:  []string{"bar/elsewhere", "istio-system/mesh"},
			wantAuthz: []string{"bar/other-ns", "istio-system/root-all", "istio-system/root-httpbin"},
			wantReqn:  []string{"bar/bar-jwt", "istio-system/root-jwt"},
		},
		{
			name:      "proxy in the root namespace gets each root policy once",
			proxy:     proxy("istio-system", map[string]string{"app": "other"}),
			wantPeer:  []string{"istio-system/mesh"},
			wantAuthz: []string{"istio-system/root-all", "istio-system/root-other"},
			wantReqn:  []string{"istio-system/root-jwt"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := xds.Build(snap, nil, mesh, tt.proxy)
			if got := sorted(keys(v.PeerAuthentications)); !reflect.DeepEqual(got, tt.wantPeer) {
				t.Errorf("PeerAuthentications = %v, want %v", got, tt.wantPeer)
			}
			if got := sorted(keys(v.AuthorizationPolicies)); !reflect.DeepEqual(got, tt.wantAuthz) {
				t.Errorf("AuthorizationPolicies = %v, want %v", got, tt.wantAuthz)
			}
			if got := sorted(keys(v.RequestAuthentications)); !reflect.DeepEqual(got, tt.wantReqn) {
				t.Errorf("RequestAuthentications = %v, want %v", got, tt.wantReqn)
			}
		})
	}
}

func TestBuildWithoutRootNamespaceUsesOnlyOwnNamespace(t *testing.T) {
	snap := config.NewSnapshot("1", []config.Resource{authz("", "empty-ns", nil), authz("istio-system", "root", nil), authz("foo", "own", nil)})
	v := xds.Build(snap, nil, xds.Mesh{TrustDomain: "cluster.local"}, proxy("foo", nil))
	if got := keys(v.AuthorizationPolicies); !reflect.DeepEqual(got, []string{"foo/own"}) {
		t.Errorf("AuthorizationPolicies = %v, want [foo/own]", got)
	}
}

func TestBuildVersionIsAContentHash(t *testing.T) {
	svcs := []registry.Service{{Hostname: "a.foo.svc.cluster.local", Namespace: "foo", Endpoints: []registry.Endpoint{{Address: "127.0.0.1:1", Identity: "spiffe://cluster.local/ns/foo/sa/a", HasProxy: true, Workload: "foo/a"}}}}
	p := proxy("foo", map[string]string{"app": "httpbin"})
	base := xds.Build(config.NewSnapshot("1", []config.Resource{authz("foo", "x", nil)}), svcs, mesh, p)
	same := xds.Build(config.NewSnapshot("2", []config.Resource{authz("foo", "x", nil), authz("bar", "unrelated", nil)}), svcs, mesh, p)
	if base.Version != same.Version {
		t.Errorf("versions differ for equal views: %s, %s", base.Version, same.Version)
	}
	changedPolicy := xds.Build(config.NewSnapshot("1", []config.Resource{authz("foo", "x", selector("app", "httpbin"))}), svcs, mesh, p)
	svcs2 := []registry.Service{{Hostname: "a.foo.svc.cluster.local", Namespace: "foo", Endpoints: []registry.Endpoint{{Address: "127.0.0.1:1", Identity: "spiffe://cluster.local/ns/foo/sa/b", HasProxy: true, Workload: "foo/a"}}}}
	changedIdentity := xds.Build(config.NewSnapshot("1", []config.Resource{authz("foo", "x", nil)}), svcs2, mesh, p)
	otherMesh := mesh
	otherMesh.TrustDomain = "example.org"
	changedMesh := xds.Build(config.NewSnapshot("1", []config.Resource{authz("foo", "x", nil)}), svcs, otherMesh, p)
	for name, v := range map[string]*xds.View{"policy spec": changedPolicy, "endpoint identity": changedIdentity, "trust domain": changedMesh} {
		if v.Version == base.Version {
			t.Errorf("changing the %s left the version at %s", name, v.Version)
		}
	}
}

func sorted(s []string) []string {
	out := append([]string{}, s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// TestBuildPushesOnlyVisibleDestinationRules: a proxy gets the rules
// exported to its namespace (a rule exported only elsewhere does not
// govern its own namespace either, as in Istio), so that a rule meant for
// one namespace reaches no other proxy.
func TestBuildPushesOnlyVisibleDestinationRules(t *testing.T) {
	snap := config.NewSnapshot("1", []config.Resource{
		destRule("foo", "private", "."),
		destRule("foo", "to-bar", "bar"),
		destRule("bar", "bar-private", "."),
		destRule("baz", "public"),
		destRule("baz", "star", "*"),
		destRule("istio-system", "root-private", "."),
	})
	for _, tc := range []struct {
		ns   string
		want []string
	}{
		{"foo", []string{"baz/public", "baz/star", "foo/private"}},
		{"bar", []string{"bar/bar-private", "baz/public", "baz/star", "foo/to-bar"}},
		{"qux", []string{"baz/public", "baz/star"}},
		{"istio-system", []string{"baz/public", "baz/star", "istio-system/root-private"}},
	} {
		v := xds.Build(snap, nil, mesh, proxy(tc.ns, nil))
		if got := keys(v.DestinationRules); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("proxy in %s got %v, want %v", tc.ns, got, tc.want)
		}
		enc, err := xds.Encode(v)
		if err != nil {
			t.Fatal(err)
		}
		if n := len(enc[xds.TypeDestinationRule]); n != len(tc.want) {
			t.Errorf("proxy in %s: %d DestinationRule resources encoded", tc.ns, n)
		}
	}
}
