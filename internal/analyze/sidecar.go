package analyze

import (
	networking "istio.io/api/networking/v1alpha3"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/labelsel"
)

// analyzeSidecarSelectors is Istio's sidecar.SelectorAnalyzer for the
// Sidecars whose workloadSelector has labels (the others are IST0111's
// business): a selector that matches no workload of its namespace is
// IST0101 "selector", and a workload that several such Sidecars select is
// IST0110 on each of them. A proxy takes one Sidecar: zmesh the first by
// name (sidecarscope.Select), Istio the oldest, so the others are
// silently ignored for that workload and the author cannot tell which
// egress hosts are in force.
func analyzeSidecarSelectors(c *context) {
	var owners []selectorOwner
	for _, r := range c.in.Snapshot.List(config.KindSidecar) {
		if sc, ok := r.Spec.(*networking.Sidecar); ok && len(sc.GetWorkloadSelector().GetLabels()) > 0 {
			owners = append(owners, selectorOwner{r, sc.GetWorkloadSelector().GetLabels()})
		}
	}
	c.checkSelectorConflicts(owners, ConflictingSidecarWorkloadSelectors)
}

// selectorOwner is a resource of a kind that applies to the workloads of
// its namespace its selector matches, and that selector (not empty).
type selectorOwner struct {
	r   config.Resource
	sel map[string]string
}

// checkSelectorConflicts is what Istio's Sidecar and Telemetry selector
// analyzers share: an owner whose selector matches no workload of its
// namespace is IST0101 "selector"; a workload several owners select is
// reported on each of them as conflict, with their names (in snapshot
// order, which is by name within a namespace, as Istio lists them), its
// namespace and its name. Without known workloads nothing is checked:
// every selector would match nothing.
func (c *context) checkSelectorConflicts(owners []selectorOwner, conflict Type) {
	if !c.workloadsKnown() {
		return
	}
	type selected struct {
		w      Workload
		owners []config.Resource
	}
	var order []string // workload keys, in the order first selected
	byWorkload := map[string]*selected{}
	for _, o := range owners {
		found := false
		for _, w := range c.workloads {
			if w.Namespace != o.r.Namespace || !labelsel.Matches(o.sel, w.Labels) {
				continue
			}
			found = true
			k := w.Kind + " " + c.workloadKey(w)
			s := byWorkload[k]
			if s == nil {
				s = &selected{w: w}
				byWorkload[k] = s
				order = append(order, k)
			}
			s.owners = append(s.owners, o.r)
		}
		if !found {
			c.reportOn(ReferencedResourceNotFound, o.r, "selector", selectorString(o.sel))
		}
	}
	for _, k := range order {
		s := byWorkload[k]
		if len(s.owners) < 2 {
			continue
		}
		names := make([]string, len(s.owners))
		for i, r := range s.owners {
			names[i] = r.Name
		}
		for _, r := range s.owners {
			c.reportOn(conflict, r, names, s.w.Namespace, s.w.Name)
		}
	}
}
