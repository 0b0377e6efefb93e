package authn

import (
	"fmt"
	"testing"

	"github.com/zmesh/zmesh/internal/config"
	security "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"
)

// pa builds a PeerAuthentication. mode "" is UNSET; selector nil means no
// selector; ports maps port -> mode.
func pa(ns, name, mode string, selector map[string]string, ports map[uint32]string) config.Resource {
	spec := &security.PeerAuthentication{}
	if mode != "" {
		spec.Mtls = &security.PeerAuthentication_MutualTLS{Mode: security.PeerAuthentication_MutualTLS_Mode(security.PeerAuthentication_MutualTLS_Mode_value[mode])}
	}
	if selector != nil {
		spec.Selector = &typev1beta1.WorkloadSelector{MatchLabels: selector}
	}
	if ports != nil {
		spec.PortLevelMtls = map[uint32]*security.PeerAuthentication_MutualTLS{}
		for p, m := range ports {
			spec.PortLevelMtls[p] = &security.PeerAuthentication_MutualTLS{Mode: security.PeerAuthentication_MutualTLS_Mode(security.PeerAuthentication_MutualTLS_Mode_value[m])}
		}
	}
	return config.Resource{Meta: config.Meta{Kind: config.KindPeerAuthentication, Name: name, Namespace: ns}, Spec: spec}
}

var app = map[string]string{"app": "httpbin"}

// TestCompilePeer is the PeerAuthentication precedence of Istio's
// ComposePeerAuthentication (pilot/pkg/security/authn) and the
// PeerAuthentication reference: "workload-specific policy > namespace-wide
// > mesh-wide; UNSET inherits from the parent; portLevelMtls only with a
// selector; nothing set: PERMISSIVE".
func TestCompilePeer(t *testing.T) {
	w := Workload{Namespace: "foo", Labels: map[string]string{"app": "httpbin", "version": "v1"}}
	cases := []struct {
		name   string
		pas    []config.Resource
		root   string
		port   uint32
		want   Mode
		source string
	}{
		{name: "no policy anywhere: PERMISSIVE (Istio's default)",
			want: ModePermissive, source: ""},
		{name: "mesh-wide policy in the root namespace applies to every namespace",
			pas: []config.Resource{pa("istio-system", "default", "STRICT", nil, nil)}, want: ModeStrict, source: "istio-system/default"},
		{name: "root namespace is configurable",
			pas: []config.Resource{pa("istio-system", "default", "STRICT", nil, nil), pa("mesh-root", "default", "DISABLE", nil, nil)}, root: "mesh-root",
			want: ModeDisable, source: "mesh-root/default"},
		{name: "namespace-wide policy overrides mesh-wide",
			pas: []config.Resource{pa("istio-system", "default", "STRICT", nil, nil), pa("foo", "default", "PERMISSIVE", nil, nil)}, want: ModePermissive, source: "foo/default"},
		{name: "another namespace's policy does not apply",
			pas: []config.Resource{pa("bar", "default", "STRICT", nil, nil)}, want: ModePermissive},
		{name: "workload policy overrides namespace-wide",
			pas: []config.Resource{pa("foo", "default", "STRICT", nil, nil), pa("foo", "httpbin", "DISABLE", app, nil)}, want: ModeDisable, source: "foo/httpbin"},
		{name: "workload policy selects by subset of labels",
			pas: []config.Resource{pa("foo", "v1", "STRICT", map[string]string{"app": "httpbin", "version": "v1"}, nil)}, want: ModeStrict, source: "foo/v1"},
		{name: "workload policy with a label the workload lacks does not apply",
			pas: []config.Resource{pa("foo", "v2", "STRICT", map[string]string{"app": "httpbin", "version": "v2"}, nil)}, want: ModePermissive},
		{name: "workload policy in another namespace does not apply",
			pas: []config.Resource{pa("bar", "httpbin", "STRICT", app, nil)}, want: ModePermissive},
		{name: "selector policy in the root namespace is ignored (as Istio's Compose does)",
			pas: []config.Resource{pa("istio-system", "httpbin", "STRICT", app, nil)}, want: ModePermissive},
		{name: "empty selector is namespace-wide",
			pas: []config.Resource{pa("foo", "all", "STRICT", map[string]string{}, nil)}, want: ModeStrict, source: "foo/all"},
		{name: "UNSET namespace policy inherits the mesh policy",
			pas: []config.Resource{pa("istio-system", "default", "STRICT", nil, nil), pa("foo", "default", "", nil, nil)}, want: ModeStrict, source: "istio-system/default"},
		{name: "UNSET workload policy inherits the namespace policy",
			pas: []config.Resource{pa("foo", "default", "DISABLE", nil, nil), pa("foo", "httpbin", "UNSET", app, nil)}, want: ModeDisable, source: "foo/default"},
		{name: "UNSET everywhere: PERMISSIVE",
			pas: []config.Resource{pa("istio-system", "default", "", nil, nil), pa("foo", "default", "", nil, nil), pa("foo", "httpbin", "", app, nil)}, want: ModePermissive},
		{name: "port-level mode overrides the workload mode on its port",
			pas: []config.Resource{pa("foo", "httpbin", "STRICT", app, map[uint32]string{8080: "DISABLE"})}, port: 8080, want: ModeDisable, source: "foo/httpbin"},
		{name: "port-level mode does not touch other ports",
			pas: []config.Resource{pa("foo", "httpbin", "STRICT", app, map[uint32]string{8080: "DISABLE"})}, port: 9090, want: ModeStrict, source: "foo/httpbin"},
		{name: "port-level UNSET inherits the workload's resolved mode",
			pas: []config.Resource{pa("istio-system", "default", "STRICT", nil, nil), pa("foo", "httpbin", "", app, map[uint32]string{8080: "UNSET"})}, port: 8080, want: ModeStrict, source: "istio-system/default"},
		{name: "port-level UNSET with nothing above: PERMISSIVE",
			pas: []config.Resource{pa("foo", "httpbin", "", app, map[uint32]string{8080: "UNSET"})}, port: 8080, want: ModePermissive},
		{name: "port-level on a workload policy with UNSET mode overrides the namespace",
			pas: []config.Resource{pa("foo", "default", "STRICT", nil, nil), pa("foo", "httpbin", "", app, map[uint32]string{8080: "PERMISSIVE"})}, port: 8080, want: ModePermissive, source: "foo/httpbin"},
		{name: "port-level settings of a namespace policy are ignored (invalid in Istio)",
			pas: []config.Resource{pa("foo", "default", "STRICT", nil, map[uint32]string{8080: "DISABLE"})}, port: 8080, want: ModeStrict, source: "foo/default"},
		{name: "several workload policies: the first by name wins (Istio: the oldest)",
			pas: []config.Resource{pa("foo", "b-strict", "STRICT", app, nil), pa("foo", "a-disable", "DISABLE", app, nil)}, want: ModeDisable, source: "foo/a-disable"},
		{name: "the losing workload policy's ports do not apply",
			pas: []config.Resource{pa("foo", "b", "STRICT", app, map[uint32]string{8080: "DISABLE"}), pa("foo", "a", "STRICT", app, nil)}, port: 8080, want: ModeStrict, source: "foo/a"},
		{name: "several namespace policies: the first by name wins",
			pas: []config.Resource{pa("foo", "z", "STRICT", nil, nil), pa("foo", "default", "PERMISSIVE", nil, nil)}, want: ModePermissive, source: "foo/default"},
		{name: "several mesh policies: the first by name wins",
			pas: []config.Resource{pa("istio-system", "z", "DISABLE", nil, nil), pa("istio-system", "a", "STRICT", nil, nil)}, want: ModeStrict, source: "istio-system/a"},
		{name: "other kinds in the list are ignored",
			pas: []config.Resource{{Meta: config.Meta{Kind: config.KindAuthorizationPolicy, Name: "x", Namespace: "foo"}, Spec: &security.AuthorizationPolicy{}}}, want: ModePermissive},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := CompilePeer(tc.pas, w, tc.root)
			if got := p.Mode(tc.port); got != tc.want {
				t.Errorf("Mode(%d) = %v, want %v", tc.port, got, tc.want)
			}
			if got := p.Source(tc.port); got != tc.source {
				t.Errorf("Source(%d) = %q, want %q", tc.port, got, tc.source)
			}
		})
	}
}

func TestCompilePeerForWorkloadInRootNamespace(t *testing.T) {
	w := Workload{Namespace: "istio-system", Labels: app}
	p := CompilePeer([]config.Resource{
		pa("istio-system", "default", "STRICT", nil, nil),
		pa("istio-system", "httpbin", "DISABLE", app, nil), // ignored: selector in root namespace
	}, w, "")
	if p.Mode(80) != ModeStrict || p.Source(80) != "istio-system/default" {
		t.Errorf("got %v from %q, want STRICT from istio-system/default", p.Mode(80), p.Source(80))
	}
}

func TestCompilePeerIsIndependentOfInputOrder(t *testing.T) {
	pas := []config.Resource{
		pa("foo", "b", "STRICT", app, map[uint32]string{1: "DISABLE"}),
		pa("foo", "a", "PERMISSIVE", app, map[uint32]string{2: "STRICT"}),
		pa("foo", "ns2", "DISABLE", nil, nil),
		pa("foo", "ns1", "STRICT", nil, nil),
	}
	w := Workload{Namespace: "foo", Labels: app}
	want := CompilePeer(pas, w, "")
	for i := range pas {
		rotated := append(append([]config.Resource{}, pas[i:]...), pas[:i]...)
		got := CompilePeer(rotated, w, "")
		for _, port := range []uint32{1, 2, 3} {
			if got.Mode(port) != want.Mode(port) || got.Source(port) != want.Source(port) {
				t.Errorf("rotation %d port %d: %v/%s, want %v/%s", i, port, got.Mode(port), got.Source(port), want.Mode(port), want.Source(port))
			}
		}
	}
	if ports := want.Ports(); fmt.Sprint(ports) != "[2]" {
		t.Errorf("Ports() = %v, want [2]", ports)
	}
}

func TestZeroPeerPolicyIsPermissive(t *testing.T) {
	var p PeerPolicy
	if p.Mode(443) != ModePermissive || p.Source(443) != "" || len(p.Ports()) != 0 {
		t.Errorf("zero PeerPolicy: %v %q %v", p.Mode(443), p.Source(443), p.Ports())
	}
}

func TestModeString(t *testing.T) {
	for m, want := range map[Mode]string{ModeUnset: "UNSET", ModePermissive: "PERMISSIVE", ModeStrict: "STRICT", ModeDisable: "DISABLE"} {
		if m.String() != want {
			t.Errorf("%d.String() = %q, want %q", m, m.String(), want)
		}
	}
}

func BenchmarkPeerMode(b *testing.B) {
	p := CompilePeer([]config.Resource{
		pa("istio-system", "default", "STRICT", nil, nil),
		pa("foo", "httpbin", "", app, map[uint32]string{8080: "DISABLE"}),
	}, Workload{Namespace: "foo", Labels: app}, "")
	b.ReportAllocs()
	for b.Loop() {
		_ = p.Mode(8080)
		_ = p.Mode(9090)
	}
}
