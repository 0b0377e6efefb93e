package analyze

import (
	telemetry "istio.io/api/telemetry/v1alpha1"

	"github.com/zmesh/zmesh/internal/config"
)

// analyzeParsedTelemetry checks the Telemetry resources zmesh parses (for
// their tracing): Istio's IST0157 for access logging that names no
// provider where the mesh config has no default one, and ZM0010 for the
// parts zmesh does not apply (metrics and access logging; its own are
// always on), so that nobody relies on them.
func analyzeParsedTelemetry(c *context) {
	defaultLog := len(c.in.Mesh.GetDefaultProviders().GetAccessLogging()) > 0
	for _, r := range c.in.Snapshot.List(config.KindTelemetry) {
		t, ok := r.Spec.(*telemetry.Telemetry)
		if !ok {
			continue
		}
		for _, l := range t.GetAccessLogging() {
			if !defaultLog && !l.GetDisabled().GetValue() && len(l.GetProviders()) == 0 {
				c.reportOn(InvalidTelemetryProvider, r, r.Name, r.Namespace)
				break
			}
		}
		if len(t.GetMetrics()) > 0 || len(t.GetAccessLogging()) > 0 {
			c.reportOn(NotEnforced, r, "Telemetry metrics and accessLogging")
		}
	}
}
