package xds_test

import (
	"reflect"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/xds"
)

func virtualService(ns, name string, exportTo, gateways []string) config.Resource {
	return config.Resource{
		Meta: config.Meta{Kind: config.KindVirtualService, APIVersion: "networking.istio.io/v1", Name: name, Namespace: ns},
		Spec: &networking.VirtualService{
			Hosts: []string{name}, Gateways: gateways, ExportTo: exportTo,
			Http: []*networking.HTTPRoute{{Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: name + "-v2"}}}}},
		},
	}
}

// TestVirtualServicesReachTheProxiesTheyAreExportedTo: a proxy gets the
// VirtualServices bound to sidecars and exported to its namespace, the
// Index gives what Build gives, and they survive Encode and Decode.
func TestVirtualServicesReachTheProxiesTheyAreExportedTo(t *testing.T) {
	snap, svcs := indexFixture()
	all := append(snap.All(),
		virtualService("bar", "public", nil, nil),
		virtualService("bar", "mesh-and-gateway", []string{"*"}, []string{"ingress", "mesh"}),
		virtualService("bar", "gateway-only", nil, []string{"ingress"}),
		virtualService("bar", "private", []string{"."}, nil),
		virtualService("bar", "to-foo", []string{"foo"}, nil),
	)
	snap = config.NewSnapshot("2", all)
	ix, err := xds.NewIndex(snap, svcs, mesh, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"foo": {"bar/mesh-and-gateway", "bar/public", "bar/to-foo"},
		"bar": {"bar/mesh-and-gateway", "bar/private", "bar/public"},
		"baz": {"bar/mesh-and-gateway", "bar/public"},
	}
	for ns, wantKeys := range want {
		p := proxy(ns, nil)
		v := xds.Build(snap, svcs, mesh, p)
		got, gotEnc := ix.Build(p)
		if !reflect.DeepEqual(got, v) {
			t.Errorf("%s: Index view differs from Build's", ns)
		}
		if k := keys(got.VirtualServices); !slices.Equal(k, wantKeys) {
			t.Errorf("%s: VirtualServices %v, want %v", ns, k, wantKeys)
		}
		enc, err := xds.Encode(v)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(names(gotEnc), names(enc)) {
			t.Errorf("%s: Index resources differ from Encode's", ns)
		}
		dec, err := xds.Decode(v.Version, received(enc))
		if err != nil {
			t.Fatal(err)
		}
		if len(dec.VirtualServices) != len(wantKeys) || dec.VirtualServices[0].Kind != config.KindVirtualService ||
			!proto.Equal(dec.VirtualServices[0].Spec, v.VirtualServices[0].Spec) || xds.Version(dec) != v.Version {
			t.Errorf("%s: decoded %v, version %s want %s", ns, dec.VirtualServices, xds.Version(dec), v.Version)
		}
	}

	// A changed VirtualService wakes every proxy and changes their versions.
	edited := slices.Clone(all)
	edited[len(edited)-1] = virtualService("bar", "to-foo", []string{"foo"}, []string{"mesh"})
	ix2, err := xds.NewIndex(config.NewSnapshot("3", edited), svcs, mesh, ix)
	if err != nil {
		t.Fatal(err)
	}
	if everyone, _ := ix2.Changes(ix); !everyone {
		t.Error("a VirtualService edit did not wake every proxy")
	}
	v1, _ := ix.Build(proxy("foo", nil))
	v2, _ := ix2.Build(proxy("foo", nil))
	if v1.Version == v2.Version {
		t.Error("the view version did not change with the VirtualService")
	}
}
