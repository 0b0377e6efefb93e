package analyze

import (
	networking "istio.io/api/networking/v1alpha3"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/labelsel"
)

// analyzeSidecarSelectors is Istio's sidecar.SelectorAnalyzer for the
// Sidecars whose workloadSelector has labels (selector-less ones are
// IST0111's business, and an empty selector is ignored as Istio ignores
// it): a selector that matches no workload of its namespace is IST0101
// "selector", and a workload that several such Sidecars select is
// IST0110 on each of them. A proxy takes one Sidecar: zmesh the first by
// name (sidecarscope.Select), Istio the oldest, so the others are
// silently ignored for that workload and the author cannot tell which
// egress hosts are in force. Without known workloads nothing is checked:
// every selector would match nothing.
func analyzeSidecarSelectors(c *context) {
	if !c.workloadsKnown() {
		return
	}
	type selecting struct {
		w        Workload
		sidecars []config.Resource
	}
	var order []string // workload keys, in the order first selected
	byWorkload := map[string]*selecting{}
	for _, r := range c.in.Snapshot.List(config.KindSidecar) {
		sc, ok := r.Spec.(*networking.Sidecar)
		if !ok || len(sc.GetWorkloadSelector().GetLabels()) == 0 {
			continue
		}
		sel := sc.GetWorkloadSelector().GetLabels()
		found := false
		for _, w := range c.workloads {
			if w.Namespace != r.Namespace || !labelsel.Matches(sel, w.Labels) {
				continue
			}
			found = true
			k := w.Kind + " " + c.workloadKey(w)
			s := byWorkload[k]
			if s == nil {
				s = &selecting{w: w}
				byWorkload[k] = s
				order = append(order, k)
			}
			s.sidecars = append(s.sidecars, r)
		}
		if !found {
			c.reportOn(ReferencedResourceNotFound, r, "selector", selectorString(sel))
		}
	}
	for _, k := range order {
		s := byWorkload[k]
		if len(s.sidecars) < 2 {
			continue
		}
		names := make([]string, len(s.sidecars))
		for i, r := range s.sidecars {
			names[i] = r.Name
		}
		for _, r := range s.sidecars {
			c.reportOn(ConflictingSidecarWorkloadSelectors, r, names, s.w.Namespace, s.w.Name)
		}
	}
}
