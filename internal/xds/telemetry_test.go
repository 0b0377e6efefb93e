package xds_test

import (
	"reflect"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	telemetryv1alpha1 "istio.io/api/telemetry/v1alpha1"
	typev1beta1 "istio.io/api/type/v1beta1"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/xds"
)

func telemetry(ns, name string, sel *typev1beta1.WorkloadSelector, percent float64) config.Resource {
	return config.Resource{
		Meta: config.Meta{Kind: config.KindTelemetry, APIVersion: "telemetry.istio.io/v1", Name: name, Namespace: ns},
		Spec: &telemetryv1alpha1.Telemetry{Selector: sel, Tracing: []*telemetryv1alpha1.Tracing{{
			Providers:                []*telemetryv1alpha1.ProviderRef{{Name: "otel"}},
			RandomSamplingPercentage: wrapperspb.Double(percent),
		}}},
	}
}

// TestTelemetriesReachTheProxiesTheyMayApplyTo: the root namespace's and
// the proxy's own namespace's Telemetries, those with a selector only where
// it matches, through Build, an Index, and the wire.
func TestTelemetriesReachTheProxiesTheyMayApplyTo(t *testing.T) {
	snap := config.NewSnapshot("1", []config.Resource{
		telemetry("istio-system", "mesh-default", nil, 10),
		telemetry("foo", "ns", nil, 20),
		telemetry("foo", "web", selector("app", "web"), 100),
		telemetry("foo", "api", selector("app", "api"), 100),
		telemetry("bar", "elsewhere", nil, 50),
	})
	m := mesh
	m.DefaultTracingProviders = []string{"otel"}
	m.TracingSampling = 5
	m.ExtensionProviders = []*meshv1alpha1.MeshConfig_ExtensionProvider{{Name: "otel", Provider: &meshv1alpha1.MeshConfig_ExtensionProvider_Opentelemetry{
		Opentelemetry: &meshv1alpha1.MeshConfig_ExtensionProvider_OpenTelemetryTracingProvider{Service: "otel-collector.observability", Port: 4317},
	}}}
	p := proxy("foo", map[string]string{"app": "web"})
	v := xds.Build(snap, nil, m, p)
	if got, want := keys(v.Telemetries), []string{"foo/ns", "foo/web", "istio-system/mesh-default"}; !reflect.DeepEqual(sorted(got), want) {
		t.Errorf("telemetries %v, want %v", got, want)
	}
	ix, err := xds.NewIndex(snap, nil, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, enc := ix.Build(p)
	if !reflect.DeepEqual(got, v) {
		t.Errorf("index view differs:\n got %+v\nwant %+v", got, v)
	}
	if n := len(enc[xds.TypeTelemetry]); n != 3 {
		t.Errorf("%d Telemetry resources encoded, want 3", n)
	}
	wire, err := xds.Encode(v)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := xds.Decode(v.Version, received(wire))
	if err != nil {
		t.Fatal(err)
	}
	if xds.Version(dec) != v.Version {
		t.Errorf("decoded view hashes to %s, want %s", xds.Version(dec), v.Version)
	}
	if len(dec.Telemetries) != 3 || !proto.Equal(dec.Telemetries[0].Spec, v.Telemetries[0].Spec) || dec.Telemetries[0].APIVersion != "telemetry.istio.io/v1" {
		t.Errorf("decoded telemetries %+v", dec.Telemetries)
	}
	if !reflect.DeepEqual(dec.Mesh.DefaultTracingProviders, []string{"otel"}) || dec.Mesh.TracingSampling != 5 {
		t.Errorf("decoded mesh tracing defaults %v %v", dec.Mesh.DefaultTracingProviders, dec.Mesh.TracingSampling)
	}

	changed := config.NewSnapshot("2", []config.Resource{
		telemetry("istio-system", "mesh-default", nil, 10),
		telemetry("foo", "ns", nil, 20),
		telemetry("foo", "web", selector("app", "web"), 99),
	})
	if xds.Build(changed, nil, m, p).Version == v.Version {
		t.Error("a changed Telemetry does not change the view version")
	}
	m2 := m
	m2.TracingSampling = 6
	if xds.Build(snap, nil, m2, p).Version == v.Version {
		t.Error("a changed mesh sampling rate does not change the view version")
	}
}
