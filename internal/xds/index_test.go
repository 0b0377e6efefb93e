package xds_test

import (
	"fmt"
	"reflect"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
	securityv1beta1 "istio.io/api/security/v1beta1"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/registry"
	"github.com/zmesh/zmesh/internal/xds"
)

// indexFixture is a mesh with policies at every level, in namespaces whose
// names sort differently as NAMESPACE/NAME keys than as namespaces.
func indexFixture() (*config.Snapshot, []registry.Service) {
	all := []config.Resource{
		peerAuthn("istio-system", "mesh", nil),
		peerAuthn("foo", "ns-wide", nil),
		peerAuthn("foo", "workload", selector("app", "other")),
		peerAuthn("foo-bar", "fb", nil),
		authz("istio-system", "root-all", nil),
		authz("istio-system", "root-httpbin", selector("app", "httpbin")),
		authz("foo", "ns-all", nil),
		authz("foo", "httpbin", selector("app", "httpbin")),
		authz("foo", "httpbin-v2", selector("app", "httpbin", "version", "v2")),
		authzTargetRef("foo", "via-target-ref"),
		authz("foo-bar", "x", nil),
		authz("foo.bar", "y", nil),
		authz("bar", "other-ns", nil),
		requestAuthn("istio-system", "root-jwt", nil),
		requestAuthn("foo", "httpbin-jwt", selector("app", "httpbin")),
		destRule("foo", "private", "."),
		destRule("bar", "to-foo", "foo"),
		destRule("bar", "bar-only", "."),
		destRule("foo-bar", "everywhere"),
	}
	svcs := []registry.Service{
		{Hostname: "a.foo.svc.cluster.local", Namespace: "foo", Endpoints: []registry.Endpoint{{Address: "127.0.0.1:1", Identity: "spiffe://cluster.local/ns/foo/sa/a", HasProxy: true, Workload: "foo/a", Labels: map[string]string{registry.LabelTLSMode: registry.TLSModeIstio}}}},
		{Hostname: "b.bar.svc.cluster.local", Namespace: "bar", Ports: []registry.Port{{Number: 80, Name: "http"}}},
	}
	return config.NewSnapshot("1", all), svcs
}

func TestIndexBuildsWhatBuildAndEncodeBuild(t *testing.T) {
	snap, svcs := indexFixture()
	proxies := []xds.Proxy{
		proxy("foo", map[string]string{"app": "httpbin", "version": "v2"}),
		proxy("foo", nil),
		proxy("foo-bar", map[string]string{"app": "httpbin"}),
		proxy("foo.bar", nil),
		proxy("istio-system", map[string]string{"app": "httpbin"}),
		proxy("nowhere", nil),
	}
	for _, m := range []xds.Mesh{mesh, {TrustDomain: "cluster.local"}, {TrustDomain: "cluster.local", RootNamespace: "foo-bar"}} {
		ix, err := xds.NewIndex(snap, svcs, m, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range proxies {
			t.Run(fmt.Sprintf("root %q proxy %s %v", m.RootNamespace, p.Namespace, p.Labels), func(t *testing.T) {
				want := xds.Build(snap, svcs, m, p)
				wantEnc, err := xds.Encode(want)
				if err != nil {
					t.Fatal(err)
				}
				got, gotEnc := ix.Build(p)
				if !reflect.DeepEqual(got, want) {
					t.Errorf("view differs:\n got %+v\nwant %+v", got, want)
				}
				if got.Version != xds.Version(got) {
					t.Errorf("version %s, content hash %s", got.Version, xds.Version(got))
				}
				if !reflect.DeepEqual(names(gotEnc), names(wantEnc)) {
					t.Errorf("resources differ:\n got %v\nwant %v", names(gotEnc), names(wantEnc))
				}
			})
		}
	}
}

// names lists each type's resources as NAME@VERSION.
func names(enc map[string][]xds.Resource) map[string][]string {
	out := map[string][]string{}
	for t, list := range enc {
		out[t] = []string{}
		for _, r := range list {
			out[t] = append(out[t], r.Name+"@"+r.Version)
		}
	}
	return out
}

func TestIndexChangesNameOnlyTheNamespacesThatChanged(t *testing.T) {
	snap, svcs := indexFixture()
	base, err := xds.NewIndex(snap, svcs, mesh, nil)
	if err != nil {
		t.Fatal(err)
	}
	edit := func(ns, name string) *config.Snapshot {
		var rs []config.Resource
		for _, k := range []config.Kind{config.KindPeerAuthentication, config.KindAuthorizationPolicy, config.KindRequestAuthentication, config.KindDestinationRule} {
			for _, r := range snap.List(k) {
				if r.Namespace == ns && r.Name == name {
					if dr, ok := r.Spec.(*networking.DestinationRule); ok {
						dr = proto.Clone(dr).(*networking.DestinationRule)
						dr.Host = "changed"
						r.Spec = dr
					} else {
						r.Spec = &securityv1beta1.AuthorizationPolicy{Action: securityv1beta1.AuthorizationPolicy_DENY}
					}
				}
				rs = append(rs, r)
			}
		}
		return config.NewSnapshot("2", rs)
	}
	otherMesh := mesh
	otherMesh.PathNormalization = "MERGE_SLASHES"
	moreServices := append(append([]registry.Service{}, svcs...), registry.Service{Hostname: "c.foo.svc.cluster.local", Namespace: "foo"})
	tests := []struct {
		name     string
		snap     *config.Snapshot
		services []registry.Service
		mesh     xds.Mesh
		wantAll  bool
		wantNS   map[string]bool
	}{
		{"nothing changed", snap, svcs, mesh, false, nil},
		{"same content, new snapshot", edit("none", "none"), svcs, mesh, false, map[string]bool{}},
		{"a policy in foo", edit("foo", "ns-all"), svcs, mesh, false, map[string]bool{"foo": true}},
		{"a policy in bar", edit("bar", "other-ns"), svcs, mesh, false, map[string]bool{"bar": true}},
		{"a root namespace policy", edit("istio-system", "root-all"), svcs, mesh, true, nil},
		{"a private DestinationRule", edit("foo", "private"), svcs, mesh, false, map[string]bool{"foo": true}},
		{"a DestinationRule exported to foo", edit("bar", "to-foo"), svcs, mesh, false, map[string]bool{"foo": true, "bar": true}},
		{"a DestinationRule exported everywhere", edit("foo-bar", "everywhere"), svcs, mesh, true, nil},
		{"a DestinationRule removed", without(snap, "bar", "bar-only"), svcs, mesh, false, map[string]bool{"bar": true}},
		{"a service", snap, moreServices, mesh, true, nil},
		{"the mesh settings", snap, svcs, otherMesh, true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ix, err := xds.NewIndex(tt.snap, tt.services, tt.mesh, base)
			if err != nil {
				t.Fatal(err)
			}
			all, nss := ix.Changes(base)
			if all != tt.wantAll || !reflect.DeepEqual(nss, tt.wantNS) {
				t.Errorf("Changes = %v %v, want %v %v", all, nss, tt.wantAll, tt.wantNS)
			}
			// What Changes leaves out really is unchanged.
			for _, ns := range []string{"foo", "bar", "foo-bar", "istio-system"} {
				p := proxy(ns, map[string]string{"app": "httpbin"})
				before, _ := base.Build(p)
				after, _ := ix.Build(p)
				if changed := before.Version != after.Version; changed && !all && !nss[ns] {
					t.Errorf("view of a proxy in %s changed, Changes did not name it", ns)
				}
			}
		})
	}
	if all, _ := base.Changes(nil); !all {
		t.Error("Changes(nil) did not report every view")
	}
}

func TestIndexReusesEncodingsOfUnchangedResources(t *testing.T) {
	snap, svcs := indexFixture()
	first, err := xds.NewIndex(snap, svcs, mesh, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A reparse: equal content in new objects.
	var rs []config.Resource
	for _, r := range snap.All() {
		r.Spec = clone(r.Spec)
		rs = append(rs, r)
	}
	second, err := xds.NewIndex(config.NewSnapshot("2", rs), svcs, mesh, first)
	if err != nil {
		t.Fatal(err)
	}
	p := proxy("foo", map[string]string{"app": "httpbin"})
	_, a := first.Build(p)
	_, b := second.Build(p)
	for typ := range a {
		for i := range a[typ] {
			if a[typ][i].Body != b[typ][i].Body {
				t.Errorf("%s %s encoded again", typ, a[typ][i].Name)
			}
		}
	}
}

func TestIndexRefusesWhatCannotBeEncoded(t *testing.T) {
	snap, svcs := indexFixture()
	bad := mesh
	bad.PathNormalization = "SOMETHING_ELSE"
	if _, err := xds.NewIndex(snap, svcs, bad, nil); err == nil {
		t.Error("NewIndex accepted a mesh it cannot encode")
	}
}

// BenchmarkIndexBuild is one proxy's view built from an Index over 1,000
// namespaces of policies and 100 services: what a push costs per proxy.
func BenchmarkIndexBuild(b *testing.B) {
	var rs []config.Resource
	for i := range 1000 {
		ns := fmt.Sprintf("ns-%04d", i)
		rs = append(rs, peerAuthn(ns, "default", nil), authz(ns, "all", nil))
		for app := range 4 {
			rs = append(rs, authz(ns, fmt.Sprintf("app-%d", app), selector("app", fmt.Sprintf("app-%d", app))))
		}
	}
	var svcs []registry.Service
	for i := range 100 {
		svcs = append(svcs, registry.Service{Hostname: fmt.Sprintf("s%d.ns-0000.svc.cluster.local", i), Namespace: "ns-0000", Endpoints: []registry.Endpoint{{Address: fmt.Sprintf("10.0.0.%d:15006", i), Identity: "spiffe://cluster.local/ns/ns-0000/sa/s", HasProxy: true, Workload: "ns-0000/s"}}})
	}
	ix, err := xds.NewIndex(config.NewSnapshot("1", rs), svcs, mesh, nil)
	if err != nil {
		b.Fatal(err)
	}
	p := proxy("ns-0500", map[string]string{"app": "app-1"})
	b.ReportAllocs()
	for b.Loop() {
		ix.Build(p)
	}
}

func clone(m proto.Message) proto.Message { return proto.Clone(m) }

// BenchmarkBuildAndEncode is the same view built and encoded directly, as
// the server did for every proxy before Index.
func BenchmarkBuildAndEncode(b *testing.B) {
	var rs []config.Resource
	for i := range 1000 {
		ns := fmt.Sprintf("ns-%04d", i)
		rs = append(rs, peerAuthn(ns, "default", nil), authz(ns, "all", nil))
		for app := range 4 {
			rs = append(rs, authz(ns, fmt.Sprintf("app-%d", app), selector("app", fmt.Sprintf("app-%d", app))))
		}
	}
	var svcs []registry.Service
	for i := range 100 {
		svcs = append(svcs, registry.Service{Hostname: fmt.Sprintf("s%d.ns-0000.svc.cluster.local", i), Namespace: "ns-0000", Endpoints: []registry.Endpoint{{Address: fmt.Sprintf("10.0.0.%d:15006", i), Identity: "spiffe://cluster.local/ns/ns-0000/sa/s", HasProxy: true, Workload: "ns-0000/s"}}})
	}
	snap := config.NewSnapshot("1", rs)
	p := proxy("ns-0500", map[string]string{"app": "app-1"})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := xds.Encode(xds.Build(snap, svcs, mesh, p)); err != nil {
			b.Fatal(err)
		}
	}
}

// destRule is a DestinationRule for host h of namespace ns, exported to
// exportTo (none: everywhere).
func destRule(ns, name string, exportTo ...string) config.Resource {
	return config.Resource{Meta: config.Meta{Kind: config.KindDestinationRule, Name: name, Namespace: ns},
		Spec: &networking.DestinationRule{Host: "h", ExportTo: exportTo, TrafficPolicy: &networking.TrafficPolicy{Tls: &networking.ClientTLSSettings{Mode: networking.ClientTLSSettings_DISABLE}}}}
}

// without is snap without the resource ns/name.
func without(snap *config.Snapshot, ns, name string) *config.Snapshot {
	rs := slices.DeleteFunc(snap.All(), func(r config.Resource) bool { return r.Namespace == ns && r.Name == name })
	return config.NewSnapshot("3", rs)
}
