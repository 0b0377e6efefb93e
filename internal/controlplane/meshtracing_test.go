package controlplane

import (
	"reflect"
	"strings"
	"testing"
)

func TestMeshTracingSettings(t *testing.T) {
	mc, err := ParseMeshConfig([]byte(`
enableTracing: true
defaultProviders: {tracing: [otel]}
defaultConfig:
  concurrency: 2
  tracing: {sampling: 12.5, maxPathTagLength: 99}
extensionProviders:
- name: otel
  opentelemetry: {service: otel-collector.observability.svc.cluster.local, port: 4317}
`))
	if err != nil {
		t.Fatal(err)
	}
	cfg := &Config{ConfigDir: "x", DataDir: "y"}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	m, ignored, err := meshSettings(cfg, mc)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(m.DefaultTracingProviders, []string{"otel"}) || m.TracingSampling != 12.5 {
		t.Errorf("tracing defaults %v %v", m.DefaultTracingProviders, m.TracingSampling)
	}
	got := strings.Join(ignored, ",")
	for _, want := range []string{"defaultConfig.concurrency", "defaultConfig.tracing.maxPathTagLength", "enableTracing"} {
		if !strings.Contains(got, want) {
			t.Errorf("ignored = %v, want %s among them", ignored, want)
		}
	}
	if strings.Contains(got, "sampling") || strings.Contains(got, "defaultProviders") {
		t.Errorf("ignored = %v names a field zmesh uses", ignored)
	}
}

func TestMeshTracingRejects(t *testing.T) {
	for name, yaml := range map[string]string{
		"sampling above 100":        "defaultConfig: {tracing: {sampling: 101}}",
		"negative sampling":         "defaultConfig: {tracing: {sampling: -1}}",
		"collector without service": "extensionProviders: [{name: otel, opentelemetry: {port: 4317}}]",
		"collector without port":    "extensionProviders: [{name: otel, opentelemetry: {service: otel.example}}]",
	} {
		t.Run(name, func(t *testing.T) {
			mc, err := ParseMeshConfig([]byte(yaml))
			if err != nil {
				t.Fatal(err)
			}
			cfg := &Config{ConfigDir: "x", DataDir: "y"}
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			if _, _, err := meshSettings(cfg, mc); err == nil {
				t.Errorf("accepted %s", yaml)
			}
		})
	}
}
