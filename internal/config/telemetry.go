package config

import (
	"fmt"
	"math"

	"google.golang.org/protobuf/proto"
	telemetry "istio.io/api/telemetry/v1alpha1"
)

// KindTelemetry is Istio's Telemetry (telemetry.istio.io/v1 and v1alpha1,
// one schema). zmesh honours its tracing part: which provider, the
// sampling rate, whether spans are reported, for the client side, the
// server side or both. Its metrics and accessLogging parts are parsed and
// validated, and not used (zmesh analyze says so).
const KindTelemetry Kind = "Telemetry"

// The Telemetry group lives beside the kinds table (kinds.go) rather than
// in it, so that the tracing work and the networking kinds do not edit the
// same lines.
func init() {
	kindsByGroup["telemetry.istio.io"] = struct {
		versions []string
		kinds    map[Kind]func() proto.Message
	}{
		versions: []string{"v1", "v1alpha1"},
		kinds: map[Kind]func() proto.Message{
			KindTelemetry: func() proto.Message { return &telemetry.Telemetry{} },
		},
	}
}

// validateTelemetry applies istiod's Telemetry rules to the tracing part:
// a selector or target refs, not both; sampling between 0 and 100; one
// provider per tracing entry (Envoy has one tracer per listener, and istiod
// refuses more); provider names and custom tags well formed.
func validateTelemetry(c *checker, in *telemetry.Telemetry) {
	checkOneOfSelector(c, in.GetSelector(), in.GetTargetRef(), in.GetTargetRefs())
	checkSelector(c, "spec.selector", in.GetSelector())
	for i, t := range in.GetTracing() {
		path := fmt.Sprintf("spec.tracing[%d]", i)
		if len(t.GetProviders()) > 1 {
			c.errorf("%s.providers: at most one provider is supported, have %d", path, len(t.GetProviders()))
		}
		for j, p := range t.GetProviders() {
			if p.GetName() == "" {
				c.errorf("%s.providers[%d].name: must be set", path, j)
			}
		}
		if s := t.GetRandomSamplingPercentage(); s != nil {
			if v := s.GetValue(); math.IsNaN(v) || v < 0 || v > 100 {
				c.errorf("%s.randomSamplingPercentage: must be between 0 and 100, not %v", path, v)
			}
		}
		if m := t.GetMatch(); m != nil {
			if _, ok := telemetry.WorkloadMode_name[int32(m.GetMode())]; !ok {
				c.errorf("%s.match.mode: unknown mode %d", path, m.GetMode())
			}
		}
		for _, name := range sortedKeys(t.GetCustomTags()) {
			tag := t.GetCustomTags()[name]
			if name == "" {
				c.errorf("%s.customTags: empty tag name", path)
			}
			if tag.GetType() == nil {
				c.errorf("%s.customTags[%s]: one of literal, environment, header or formatter must be set", path, name)
			}
		}
	}
	for i, a := range in.GetAccessLogging() {
		for j, p := range a.GetProviders() {
			if p.GetName() == "" {
				c.errorf("spec.accessLogging[%d].providers[%d].name: must be set", i, j)
			}
		}
	}
	for i, m := range in.GetMetrics() {
		for j, p := range m.GetProviders() {
			if p.GetName() == "" {
				c.errorf("spec.metrics[%d].providers[%d].name: must be set", i, j)
			}
		}
	}
}
