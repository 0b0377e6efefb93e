package analyze

import (
	"sort"

	telemetry "istio.io/api/telemetry/v1alpha1"

	"github.com/zmesh/zmesh/internal/config"
)

// analyzeTelemetrySelectors is Istio's telemetry.SelectorAnalyzer and
// DefaultSelectorAnalyzer: a Telemetry selector that matches no workload
// of its namespace is IST0101 "selector"; a workload several Telemetries
// select is IST0159 on each of them; several Telemetries of one namespace
// without selector are IST0160 on each. At each level a proxy takes one
// Telemetry (zmesh the first by name, tracing.Resolve; Istio the oldest)
// and ignores the others, so which tracing settings are in force is not
// what their author can tell. As Istio, a selector without labels is
// skipped by the first check and is not "without selector" for the
// second, and a Telemetry with targetRefs but no selector counts as one
// without.
func analyzeTelemetrySelectors(c *context) {
	var owners []selectorOwner
	byNS := map[string][]config.Resource{}
	var namespaces []string
	for _, r := range c.in.Snapshot.List(config.KindTelemetry) {
		t, ok := r.Spec.(*telemetry.Telemetry)
		if !ok {
			continue
		}
		if t.GetSelector() == nil {
			if _, seen := byNS[r.Namespace]; !seen {
				namespaces = append(namespaces, r.Namespace)
			}
			byNS[r.Namespace] = append(byNS[r.Namespace], r)
			continue
		}
		if sel := t.GetSelector().GetMatchLabels(); len(sel) > 0 {
			owners = append(owners, selectorOwner{r, sel})
		}
	}
	c.checkSelectorConflicts(owners, ConflictingTelemetryWorkloadSelectors)
	for _, ns := range namespaces {
		rs := byNS[ns]
		if len(rs) < 2 {
			continue
		}
		names := make([]string, len(rs))
		for i, r := range rs {
			names[i] = r.Name
		}
		sort.Strings(names)
		for _, r := range rs {
			c.reportOn(MultipleTelemetriesWithoutWorkloadSelectors, r, names, ns)
		}
	}
}
