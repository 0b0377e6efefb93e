package authn

import (
	security "istio.io/api/security/v1beta1"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/labelsel"
)

// SelectRequest returns the RequestAuthentications in ras that apply to the
// sidecar of w, in the order given, with Istio's scoping rules:
//
//   - one in rootNamespace applies to workloads of every namespace: to all
//     without a selector, to those whose labels include its matchLabels
//     otherwise (unlike PeerAuthentication, Istio honours selectors on
//     root-namespace RequestAuthentications);
//   - one in w's namespace applies likewise to that namespace's workloads;
//   - one with targetRef or targetRefs applies to none: those attach to
//     gateways and waypoints, never to a sidecar.
//
// Unlike PeerAuthentication there is no precedence: every selected policy's
// rules are in force together. rootNamespace "" means "istio-system".
// Resources of other kinds are skipped.
func SelectRequest(ras []config.Resource, w Workload, rootNamespace string) []config.Resource {
	if rootNamespace == "" {
		rootNamespace = DefaultRootNamespace
	}
	var out []config.Resource
	for _, r := range ras {
		spec, ok := r.Spec.(*security.RequestAuthentication)
		if !ok || r.Kind != config.KindRequestAuthentication {
			continue
		}
		if r.Namespace != w.Namespace && r.Namespace != rootNamespace {
			continue
		}
		if spec.GetTargetRef() != nil || len(spec.GetTargetRefs()) > 0 {
			continue
		}
		if !labelsel.Matches(spec.GetSelector().GetMatchLabels(), w.Labels) {
			continue
		}
		out = append(out, r)
	}
	return out
}
