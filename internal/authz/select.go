package authz

import (
	securityv1beta1 "istio.io/api/security/v1beta1"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/labelsel"
)

// Workload identifies the workload whose inbound traffic is being
// authorized: labelsel.Workload, one type for every policy engine.
type Workload = labelsel.Workload

// Select returns the AuthorizationPolicies that apply to w, in the order
// given, following Istio's scoping rules for sidecars:
//
//   - a policy in rootNamespace applies to workloads in every namespace,
//     to all of them without a selector, to those whose labels include its
//     selector.matchLabels otherwise;
//   - a policy in w's namespace likewise applies to all of its workloads
//     without a selector, to the matching ones with one;
//   - a policy with targetRef or targetRefs applies to none: those attach
//     policies to Gateways, GatewayClasses, Services and ServiceEntries,
//     which Istio enforces at gateways and waypoints, never at a sidecar
//     (Istio's docs: "Service ... is only supported for waypoints").
//
// An empty selector (`selector: {}`) selects every workload in scope, as in
// Istio. rootNamespace "" disables mesh-wide policies. Resources of other
// kinds are skipped.
func Select(policies []config.Resource, w Workload, rootNamespace string) []config.Resource {
	var out []config.Resource
	for _, r := range policies {
		spec, ok := r.Spec.(*securityv1beta1.AuthorizationPolicy)
		if !ok || spec == nil {
			continue
		}
		if r.Namespace != w.Namespace && (rootNamespace == "" || r.Namespace != rootNamespace) {
			continue
		}
		if spec.GetTargetRef() != nil || len(spec.GetTargetRefs()) > 0 {
			continue
		}
		if sel := spec.GetSelector(); sel != nil && !labelsel.Matches(sel.GetMatchLabels(), w.Labels) {
			continue
		}
		out = append(out, r)
	}
	return out
}
