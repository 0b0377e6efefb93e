package xds_test

import (
	"reflect"
	"slices"
	"testing"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/xds"
)

func gatewayResource(ns, name string, selector map[string]string) config.Resource {
	return config.Resource{
		Meta: config.Meta{Kind: config.KindGateway, APIVersion: "networking.istio.io/v1", Name: name, Namespace: ns},
		Spec: &networking.Gateway{Selector: selector, Servers: []*networking.Server{{
			Port: &networking.Port{Number: 80, Name: "http", Protocol: "HTTP"}, Hosts: []string{"*"},
		}}},
	}
}

func gatewayProxy(ns string, labels map[string]string) xds.Proxy {
	p := proxy(ns, labels)
	p.Gateway = true
	return p
}

// TestGatewaysReachTheGatewaysTheySelect: a gateway proxy gets the
// Gateways whose selector matches its labels, in any namespace, and the
// VirtualServices bound to them by name (a bare name is in the
// VirtualService's namespace) and exported to the Gateway's namespace;
// sidecars get neither Gateways nor gateway-only VirtualServices. The
// Index gives what Build gives, and the Gateways survive Encode and Decode.
func TestGatewaysReachTheGatewaysTheySelect(t *testing.T) {
	snap, svcs := indexFixture()
	all := append(snap.All(),
		gatewayResource("istio-system", "ingress", map[string]string{"istio": "ingressgateway"}),
		gatewayResource("istio-system", "egress", map[string]string{"istio": "egressgateway"}),
		gatewayResource("bar", "bar-ingress", map[string]string{"istio": "ingressgateway", "team": "bar"}),
		virtualService("bar", "via-ingress", nil, []string{"istio-system/ingress"}),
		virtualService("bar", "via-egress-and-mesh", nil, []string{"mesh", "istio-system/egress"}),
		virtualService("bar", "bare-name", nil, []string{"ingress"}), // bar/ingress: no such Gateway
		virtualService("bar", "private", []string{"."}, []string{"istio-system/ingress"}),
		virtualService("istio-system", "own-ns", []string{"."}, []string{"ingress"}),
		virtualService("bar", "sidecars", nil, nil),
	)
	snap = config.NewSnapshot("2", all)
	ix, err := xds.NewIndex(snap, svcs, mesh, nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name         string
		p            xds.Proxy
		wantGateways []string
		wantVSs      []string
	}{
		{"ingress gateway", gatewayProxy("istio-system", map[string]string{"istio": "ingressgateway"}),
			[]string{"istio-system/ingress"}, []string{"bar/via-ingress", "istio-system/own-ns"}},
		{"ingress gateway in another namespace, more labels", gatewayProxy("bar", map[string]string{"istio": "ingressgateway", "team": "bar"}),
			[]string{"bar/bar-ingress", "istio-system/ingress"}, []string{"bar/via-ingress", "istio-system/own-ns"}},
		{"egress gateway", gatewayProxy("istio-system", map[string]string{"istio": "egressgateway"}),
			[]string{"istio-system/egress"}, []string{"bar/via-egress-and-mesh"}},
		{"gateway no Gateway selects", gatewayProxy("istio-system", map[string]string{"app": "x"}), []string{}, []string{}},
		{"sidecar with a gateway's labels", proxy("istio-system", map[string]string{"istio": "ingressgateway"}),
			[]string{}, []string{"bar/sidecars", "bar/via-egress-and-mesh"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := xds.Build(snap, svcs, mesh, tt.p)
			got, gotEnc := ix.Build(tt.p)
			if !reflect.DeepEqual(got, v) {
				t.Errorf("Index view differs from Build's")
			}
			if k := keys(got.Gateways); !slices.Equal(k, tt.wantGateways) {
				t.Errorf("Gateways %v, want %v", k, tt.wantGateways)
			}
			if k := keys(got.VirtualServices); !slices.Equal(k, tt.wantVSs) {
				t.Errorf("VirtualServices %v, want %v", k, tt.wantVSs)
			}
			enc, err := xds.Encode(v)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(names(gotEnc), names(enc)) {
				t.Errorf("Index resources differ from Encode's")
			}
			dec, err := xds.Decode(v.Version, received(enc))
			if err != nil {
				t.Fatal(err)
			}
			if k := keys(dec.Gateways); !slices.Equal(k, tt.wantGateways) || xds.Version(dec) != v.Version {
				t.Errorf("decoded Gateways %v, version %s want %s", k, xds.Version(dec), v.Version)
			}
		})
	}

	// A Gateway edit wakes every proxy and changes the gateways' versions
	// only.
	edited := slices.Clone(all)
	for i, r := range edited {
		if r.Kind == config.KindGateway && r.Name == "ingress" {
			edited[i] = gatewayResource("istio-system", "ingress", map[string]string{"istio": "ingressgateway", "v": "2"})
		}
	}
	ix2, err := xds.NewIndex(config.NewSnapshot("3", edited), svcs, mesh, ix)
	if err != nil {
		t.Fatal(err)
	}
	if everything, _ := ix2.Changes(ix); !everything {
		t.Error("a Gateway change does not wake every proxy")
	}
	sc := proxy("bar", nil)
	before, _ := ix.Build(sc)
	after, _ := ix2.Build(sc)
	if before.Version != after.Version {
		t.Error("a Gateway change changed a sidecar's version")
	}
	gp := gatewayProxy("istio-system", map[string]string{"istio": "ingressgateway"})
	before, _ = ix.Build(gp)
	after, _ = ix2.Build(gp)
	if before.Version == after.Version || len(after.Gateways) != 0 {
		t.Errorf("gateway: version %s -> %s, Gateways %v", before.Version, after.Version, keys(after.Gateways))
	}
}

func TestGatewayMetadata(t *testing.T) {
	p := gatewayProxy("istio-system", nil)
	md := xds.ProxyMetadata(p)
	if gw, err := xds.GatewayFromMetadata(md); err != nil || !gw {
		t.Fatalf("gateway = %v, %v", gw, err)
	}
	if gw, err := xds.GatewayFromMetadata(xds.ProxyMetadata(proxy("a", nil))); err != nil || gw {
		t.Fatalf("sidecar: gateway = %v, %v", gw, err)
	}
	md.Fields[xds.MetaGateway].Kind = nil
	if _, err := xds.GatewayFromMetadata(md); err == nil {
		t.Fatal("a non-string gateway flag was accepted")
	}
}
