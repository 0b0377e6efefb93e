package tracing

import (
	"strings"
	"testing"

	meshv1alpha1 "istio.io/api/mesh/v1alpha1"

	"github.com/zmesh/zmesh/internal/config"
)

// telemetries parses Telemetry YAML documents.
func telemetries(t *testing.T, docs ...string) []config.Resource {
	t.Helper()
	rs, _, err := config.Parse([]byte(strings.Join(docs, "\n---\n")), "t.yaml")
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

func tel(ns, name, spec string) string {
	return "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: " + name + ", namespace: " + ns + "}\nspec:\n" + spec
}

func otelProvider(name, service string, port uint32) *meshv1alpha1.MeshConfig_ExtensionProvider {
	return &meshv1alpha1.MeshConfig_ExtensionProvider{Name: name, Provider: &meshv1alpha1.MeshConfig_ExtensionProvider_Opentelemetry{
		Opentelemetry: &meshv1alpha1.MeshConfig_ExtensionProvider_OpenTelemetryTracingProvider{Service: service, Port: port},
	}}
}

func TestResolve(t *testing.T) {
	mesh := Mesh{
		RootNamespace: "istio-system",
		Providers: []*meshv1alpha1.MeshConfig_ExtensionProvider{
			otelProvider("otel", "otel-collector.observability.svc.cluster.local", 4317),
			otelProvider("local", "127.0.0.1:14317", 0),
			{Name: "zipkin", Provider: &meshv1alpha1.MeshConfig_ExtensionProvider_Zipkin{Zipkin: &meshv1alpha1.MeshConfig_ExtensionProvider_ZipkinTracingProvider{Service: "zipkin", Port: 9411}}},
		},
	}
	const otel = "otel-collector.observability.svc.cluster.local:4317"
	web := Workload{Namespace: "foo", Labels: map[string]string{"app": "web"}}
	meshWide := tel("istio-system", "mesh-default", "  tracing:\n  - providers: [{name: otel}]\n    randomSamplingPercentage: 10\n")
	cases := []struct {
		name           string
		mesh           Mesh
		docs           []string
		client, server Policy
		note           string
	}{
		{name: "nothing configured: propagate, report nothing", mesh: mesh,
			client: Policy{Percent: 1}, server: Policy{Percent: 1}},
		{name: "mesh-wide", mesh: mesh, docs: []string{meshWide},
			client: Policy{Provider: "otel", Collector: otel, Percent: 10}, server: Policy{Provider: "otel", Collector: otel, Percent: 10}},
		{name: "namespace overrides the rate, inherits the provider", mesh: mesh,
			docs:   []string{meshWide, tel("foo", "ns", "  tracing:\n  - randomSamplingPercentage: 50\n")},
			client: Policy{Provider: "otel", Collector: otel, Percent: 50}, server: Policy{Provider: "otel", Collector: otel, Percent: 50}},
		{name: "workload overrides the namespace", mesh: mesh,
			docs: []string{meshWide, tel("foo", "ns", "  tracing:\n  - randomSamplingPercentage: 50\n"),
				tel("foo", "web", "  selector: {matchLabels: {app: web}}\n  tracing:\n  - providers: [{name: local}]\n    randomSamplingPercentage: 0\n")},
			client: Policy{Provider: "local", Collector: "127.0.0.1:14317", Percent: 0}, server: Policy{Provider: "local", Collector: "127.0.0.1:14317", Percent: 0}},
		{name: "a selector for other workloads does not apply", mesh: mesh,
			docs:   []string{meshWide, tel("foo", "api", "  selector: {matchLabels: {app: api}}\n  tracing:\n  - randomSamplingPercentage: 100\n")},
			client: Policy{Provider: "otel", Collector: otel, Percent: 10}, server: Policy{Provider: "otel", Collector: otel, Percent: 10}},
		{name: "another namespace's Telemetry does not apply", mesh: mesh,
			docs:   []string{meshWide, tel("bar", "ns", "  tracing:\n  - randomSamplingPercentage: 100\n")},
			client: Policy{Provider: "otel", Collector: otel, Percent: 10}, server: Policy{Provider: "otel", Collector: otel, Percent: 10}},
		{name: "match mode picks a side", mesh: mesh,
			docs:   []string{meshWide, tel("foo", "ns", "  tracing:\n  - match: {mode: SERVER}\n    disableSpanReporting: true\n  - match: {mode: CLIENT}\n    randomSamplingPercentage: 100\n")},
			client: Policy{Provider: "otel", Collector: otel, Percent: 100}, server: Policy{Provider: "otel", Percent: 10}},
		{name: "disableSpanReporting turned off again below", mesh: mesh,
			docs:   []string{tel("istio-system", "m", "  tracing:\n  - providers: [{name: otel}]\n    disableSpanReporting: true\n"), tel("foo", "ns", "  tracing:\n  - disableSpanReporting: false\n")},
			client: Policy{Provider: "otel", Collector: otel, Percent: 1}, server: Policy{Provider: "otel", Collector: otel, Percent: 1}},
		{name: "default providers and mesh sampling", mesh: Mesh{RootNamespace: "istio-system", Providers: mesh.Providers, DefaultProviders: []string{"otel"}, Sampling: 25},
			client: Policy{Provider: "otel", Collector: otel, Percent: 25}, server: Policy{Provider: "otel", Collector: otel, Percent: 25}},
		{name: "a provider that is not OpenTelemetry reports nothing", mesh: mesh,
			docs:   []string{tel("istio-system", "m", "  tracing:\n  - providers: [{name: zipkin}]\n")},
			client: Policy{Provider: "zipkin", Percent: 1}, server: Policy{Provider: "zipkin", Percent: 1}, note: "not an opentelemetry"},
		{name: "an unknown provider reports nothing", mesh: mesh,
			docs:   []string{tel("istio-system", "m", "  tracing:\n  - providers: [{name: nope}]\n")},
			client: Policy{Provider: "nope", Percent: 1}, server: Policy{Provider: "nope", Percent: 1}, note: "not an opentelemetry"},
		{name: "targetRefs never apply to a sidecar", mesh: mesh,
			docs:   []string{meshWide, tel("foo", "gw", "  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: gw}]\n  tracing:\n  - randomSamplingPercentage: 100\n")},
			client: Policy{Provider: "otel", Collector: otel, Percent: 10}, server: Policy{Provider: "otel", Collector: otel, Percent: 10}},
		{name: "two namespace-wide: the first by name wins", mesh: mesh,
			docs:   []string{meshWide, tel("foo", "a", "  tracing:\n  - randomSamplingPercentage: 30\n"), tel("foo", "b", "  tracing:\n  - randomSamplingPercentage: 70\n")},
			client: Policy{Provider: "otel", Collector: otel, Percent: 30}, server: Policy{Provider: "otel", Collector: otel, Percent: 30}, note: "foo/b ignored"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var ts []config.Resource
			if len(tc.docs) > 0 {
				ts = config.NewSnapshot("1", telemetries(t, tc.docs...)).List(config.KindTelemetry)
			}
			client, server, notes := Resolve(tc.mesh, ts, web)
			if client != tc.client || server != tc.server {
				t.Errorf("client %+v server %+v, want %+v %+v", client, server, tc.client, tc.server)
			}
			if tc.note != "" && !strings.Contains(strings.Join(notes, "\n"), tc.note) {
				t.Errorf("notes %q, want one containing %q", notes, tc.note)
			}
			if tc.note == "" && len(notes) > 0 {
				t.Errorf("unexpected notes %q", notes)
			}
		})
	}
}

func TestResolveRootNamespaceWorkload(t *testing.T) {
	ts := config.NewSnapshot("1", telemetries(t,
		tel("istio-system", "mesh", "  tracing:\n  - providers: [{name: otel}]\n    randomSamplingPercentage: 10\n"),
		tel("istio-system", "gw", "  selector: {matchLabels: {app: gw}}\n  tracing:\n  - randomSamplingPercentage: 60\n"),
	)).List(config.KindTelemetry)
	m := Mesh{RootNamespace: "istio-system", Providers: []*meshv1alpha1.MeshConfig_ExtensionProvider{otelProvider("otel", "c", 4317)}}
	c, _, _ := Resolve(m, ts, Workload{Namespace: "istio-system", Labels: map[string]string{"app": "gw"}})
	if c.Percent != 60 || c.Collector != "c:4317" {
		t.Errorf("root namespace workload: %+v", c)
	}
	c, _, _ = Resolve(m, ts, Workload{Namespace: "foo", Labels: map[string]string{"app": "gw"}})
	if c.Percent != 10 {
		t.Errorf("a root namespace selector applied to another namespace: %+v", c)
	}
}
