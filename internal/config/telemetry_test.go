package config

import (
	"testing"

	telemetry "istio.io/api/telemetry/v1alpha1"
)

func TestTelemetryParsesBothVersions(t *testing.T) {
	for _, v := range []string{"telemetry.istio.io/v1", "telemetry.istio.io/v1alpha1"} {
		doc := "apiVersion: " + v + "\nkind: Telemetry\nmetadata: {name: mesh-default, namespace: istio-system}\n" +
			"spec:\n  tracing:\n  - providers: [{name: otel}]\n    randomSamplingPercentage: 12.5\n"
		rs, warnings, err := Parse([]byte(doc), "t.yaml")
		if err != nil || len(warnings) != 0 || len(rs) != 1 {
			t.Fatalf("%s: Parse = %v, %v, %v", v, rs, warnings, err)
		}
		spec, ok := rs[0].Spec.(*telemetry.Telemetry)
		if !ok || rs[0].Kind != KindTelemetry {
			t.Fatalf("%s: spec %T kind %s", v, rs[0].Spec, rs[0].Kind)
		}
		if got := spec.GetTracing()[0].GetRandomSamplingPercentage().GetValue(); got != 12.5 {
			t.Errorf("%s: sampling %v", v, got)
		}
		if err := Validate(rs[0]); err != nil {
			t.Errorf("%s: Validate: %v", v, err)
		}
	}
}

func TestTelemetryUnknownFieldRejected(t *testing.T) {
	doc := "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: t}\nspec:\n  tracing:\n  - randomSamplingPercentag: 5\n"
	if _, _, err := Parse([]byte(doc), "t.yaml"); err == nil {
		t.Fatal("a misspelt field was accepted: its setting would silently stay at the default")
	}
}

func TestValidateTelemetry(t *testing.T) {
	runValidateCases(t, "telemetry.istio.io/v1", KindTelemetry, []validateCase{
		{name: "provider and rate", spec: "tracing:\n- providers: [{name: otel}]\n  randomSamplingPercentage: 100\n"},
		{name: "rate zero turns sampling off", spec: "tracing:\n- randomSamplingPercentage: 0\n"},
		{name: "client side only", spec: "tracing:\n- match: {mode: CLIENT}\n  disableSpanReporting: true\n"},
		{name: "selector", spec: "selector: {matchLabels: {app: web}}\ntracing:\n- providers: [{name: otel}]\n"},
		{name: "custom tag", spec: "tracing:\n- customTags: {team: {literal: {value: a}}}\n"},
		{name: "rate above 100", spec: "tracing:\n- randomSamplingPercentage: 100.5\n", wantErr: "between 0 and 100"},
		{name: "negative rate", spec: "tracing:\n- randomSamplingPercentage: -1\n", wantErr: "between 0 and 100"},
		{name: "two providers", spec: "tracing:\n- providers: [{name: a}, {name: b}]\n", wantErr: "at most one provider"},
		{name: "provider without name", spec: "tracing:\n- providers: [{}]\n", wantErr: "name: must be set"},
		{name: "custom tag without type", spec: "tracing:\n- customTags: {team: {}}\n", wantErr: "one of literal"},
		{name: "selector and targetRefs", spec: "selector: {matchLabels: {app: web}}\ntargetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: gw}]\n", wantErr: "selector"},
		{name: "metrics", spec: "metrics:\n- providers: [{name: prometheus}]\n"},
		{name: "access log provider without name", spec: "accessLogging:\n- providers: [{}]\n", wantErr: "name: must be set"},
	})
}
