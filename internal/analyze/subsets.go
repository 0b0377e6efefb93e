package analyze

import (
	networking "istio.io/api/networking/v1alpha3"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/labelsel"
)

// topologyLabels are the labels Istio adds to a pod's own from its node
// (region, zone, subzone, hostname) before it matches subsets. zmesh
// does not read nodes, so a subset that names one is not checked.
var topologyLabels = []string{
	"topology.kubernetes.io/region", "topology.kubernetes.io/zone",
	"topology.istio.io/subzone", "kubernetes.io/hostname",
}

// analyzeSubsets is Istio's destinationrule.PodNotSelectedAnalyzer
// (IST0173): a DestinationRule subset whose labels, with the
// workloadSelector of the ServiceEntry the rule's host names, select no
// workload, so a route to it finds no endpoint (503, "no healthy
// upstream"). As Istio, the host is looked up as serviceLookup finds it
// (a rule whose host it does not find is left to IST0174), and a workload
// of any namespace counts. Without known workloads nothing is checked.
func analyzeSubsets(c *context) {
	if !c.workloadsKnown() {
		return
	}
	services := newServiceLookup(c)
	for _, r := range c.in.Snapshot.List(config.KindDestinationRule) {
		dr, ok := r.Spec.(*networking.DestinationRule)
		if !ok || len(dr.GetSubsets()) == 0 {
			continue
		}
		svc, found := services.find(r.Namespace, dr.GetExportTo(), dr.GetHost())
		if !found {
			continue
		}
		for _, s := range dr.GetSubsets() {
			sel := map[string]string{}
			for k, v := range svc.selector {
				sel[k] = v
			}
			for k, v := range s.GetLabels() {
				sel[k] = v
			}
			if namesTopology(sel) || c.anyWorkloadMatches(sel) {
				continue
			}
			c.reportOn(DestinationRuleSubsetNotSelectPods, r, s.GetName())
		}
	}
}

func namesTopology(sel map[string]string) bool {
	for _, l := range topologyLabels {
		if _, ok := sel[l]; ok {
			return true
		}
	}
	return false
}

// anyWorkloadMatches reports whether sel selects a known workload of any
// namespace.
func (c *context) anyWorkloadMatches(sel map[string]string) bool {
	for _, w := range c.workloads {
		if labelsel.Matches(sel, w.Labels) {
			return true
		}
	}
	return false
}
