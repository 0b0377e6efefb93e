package xds_test

import (
	"reflect"
	"slices"
	"testing"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/xds"
)

func sidecarResources(t *testing.T, doc string) []config.Resource {
	t.Helper()
	rs, _, err := config.Parse([]byte(doc), "sidecars.yaml")
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

const fooAndRootSidecars = `apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: foo}
spec:
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
  egress: [{hosts: ["./*"]}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: istio-system}
spec:
  egress: [{hosts: ["*/*.bar.svc.cluster.local"]}]
`

// TestSidecarNarrowsTheView: a proxy under a Sidecar gets only the
// services its egress hosts name, and the Sidecar's outboundTrafficPolicy;
// the Index gives what Build gives; a Sidecar edit wakes every proxy.
func TestSidecarNarrowsTheView(t *testing.T) {
	snap, svcs := indexFixture()
	all := append(snap.All(), sidecarResources(t, fooAndRootSidecars)...)
	snap = config.NewSnapshot("2", all)
	ix, err := xds.NewIndex(snap, svcs, mesh, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ns       string
		services []string
		policy   string
	}{
		{"foo", []string{"a.foo.svc.cluster.local"}, "REGISTRY_ONLY"}, // its namespace's Sidecar
		{"bar", []string{"b.bar.svc.cluster.local"}, ""},              // the root's
		{"istio-system", []string{"b.bar.svc.cluster.local"}, ""},     // the root's, in the root
	} {
		p := proxy(tc.ns, nil)
		want := xds.Build(snap, svcs, mesh, p)
		got, gotEnc := ix.Build(p)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: Index view differs from Build's:\n got %+v\nwant %+v", tc.ns, got, want)
		}
		wantEnc, err := xds.Encode(want)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(names(gotEnc), names(wantEnc)) {
			t.Errorf("%s: resources differ:\n got %v\nwant %v", tc.ns, names(gotEnc), names(wantEnc))
		}
		var hosts []string
		for _, s := range got.Services {
			hosts = append(hosts, s.Hostname)
		}
		if !slices.Equal(hosts, tc.services) || got.Mesh.OutboundTrafficPolicy != tc.policy {
			t.Errorf("%s: services %v, outbound policy %q; want %v, %q", tc.ns, hosts, got.Mesh.OutboundTrafficPolicy, tc.services, tc.policy)
		}
		dec, err := xds.Decode(got.Version, received(gotEnc))
		if err != nil {
			t.Fatal(err)
		}
		if xds.Version(dec) != got.Version || dec.Mesh.OutboundTrafficPolicy != tc.policy {
			t.Errorf("%s: decoded version %s policy %q, want %s %q", tc.ns, xds.Version(dec), dec.Mesh.OutboundTrafficPolicy, got.Version, tc.policy)
		}
	}
	// Without the Sidecars, the proxies see every service again, under
	// new versions, and every proxy is woken.
	plain, _ := indexFixture()
	ix2, err := xds.NewIndex(plain, svcs, mesh, ix)
	if err != nil {
		t.Fatal(err)
	}
	if all, _ := ix2.Changes(ix); !all {
		t.Error("removing the Sidecars did not wake every proxy")
	}
	v, _ := ix2.Build(proxy("foo", nil))
	if len(v.Services) != len(svcs) {
		t.Errorf("without a Sidecar, foo sees %d services, want %d", len(v.Services), len(svcs))
	}
}
