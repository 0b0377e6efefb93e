package analyze

import (
	"sort"

	"google.golang.org/protobuf/proto"
	security "istio.io/api/security/v1beta1"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/labelsel"
)

// analyzePeerAuthentications checks PeerAuthentications for what Istio
// ignores without a word: a policy that loses to another at the same
// scope (ZM0001), a selector in the root namespace (ZM0002); and, as
// Istio does for AuthorizationPolicies, a selector that matches no
// workload (IST0127). (portLevelMtls without a selector, which Istio's
// webhook refuses too, is a validation error: IST0106.)
func analyzePeerAuthentications(c *context) {
	root := c.in.rootNamespace()
	type scoped struct {
		r    config.Resource
		spec *security.PeerAuthentication
	}
	var meshWide []scoped
	byNamespace := map[string][]scoped{}
	var withSelector []scoped
	for _, r := range c.in.Snapshot.List(config.KindPeerAuthentication) {
		pa, ok := r.Spec.(*security.PeerAuthentication)
		if !ok {
			continue
		}
		sel := pa.GetSelector().GetMatchLabels()
		switch {
		case len(sel) > 0 && r.Namespace == root:
			c.reportOn(PeerAuthenticationRootSelector, r, root)
			continue
		case len(sel) == 0 && r.Namespace == root:
			meshWide = append(meshWide, scoped{r, pa})
		case len(sel) == 0:
			byNamespace[r.Namespace] = append(byNamespace[r.Namespace], scoped{r, pa})
		default:
			withSelector = append(withSelector, scoped{r, pa})
		}
		if r.Namespace != root {
			c.checkSelectorMatches(r, sel, len(sel) > 0)
		}
	}

	// conflict reports every policy of group but the one in force (the
	// first by name, as authn.CompilePeer picks) when their settings
	// differ.
	conflict := func(group []scoped, scope string) {
		if len(group) < 2 {
			return
		}
		sort.Slice(group, func(i, j int) bool { return group[i].r.Name < group[j].r.Name })
		winner := group[0]
		for _, s := range group[1:] {
			if sameSettings(winner.spec, s.spec) {
				continue
			}
			c.reportOn(PeerAuthenticationConflict, s.r, winner.r.Key()+" and "+s.r.Key(), scope, winner.r.Key())
		}
	}
	conflict(meshWide, "mesh-wide")
	namespaces := make([]string, 0, len(byNamespace))
	for ns := range byNamespace {
		namespaces = append(namespaces, ns)
	}
	sort.Strings(namespaces)
	for _, ns := range namespaces {
		conflict(byNamespace[ns], "namespace "+ns)
	}
	// Workload policies compete for each workload that several select;
	// with identical selectors they compete whatever the workloads.
	sort.Slice(withSelector, func(i, j int) bool { return withSelector[i].r.Key() < withSelector[j].r.Key() })
	reported := map[string]bool{}
	for i, a := range withSelector {
		for _, b := range withSelector[i+1:] {
			if a.r.Namespace != b.r.Namespace || sameSettings(a.spec, b.spec) {
				continue
			}
			sa, sb := a.spec.GetSelector().GetMatchLabels(), b.spec.GetSelector().GetMatchLabels()
			scope := ""
			if selectorString(sa) == selectorString(sb) {
				scope = "workloads with labels " + selectorString(sa)
			} else {
				for _, w := range c.workloads {
					if w.Namespace == a.r.Namespace && labelsel.Matches(sa, w.Labels) && labelsel.Matches(sb, w.Labels) {
						scope = "workload " + c.workloadKey(w)
						break
					}
				}
			}
			if scope == "" {
				continue
			}
			winner, loser := a, b
			if b.r.Name < a.r.Name {
				winner, loser = b, a
			}
			if reported[loser.r.Key()+"|"+winner.r.Key()] {
				continue
			}
			reported[loser.r.Key()+"|"+winner.r.Key()] = true
			c.reportOn(PeerAuthenticationConflict, loser.r, winner.r.Key()+" and "+loser.r.Key(), scope, winner.r.Key())
		}
	}
}

// sameSettings reports whether two PeerAuthentications set the same
// modes, whatever their selectors.
func sameSettings(a, b *security.PeerAuthentication) bool {
	return proto.Equal(a.GetMtls(), b.GetMtls()) && len(a.GetPortLevelMtls()) == len(b.GetPortLevelMtls()) &&
		func() bool {
			for p, m := range a.GetPortLevelMtls() {
				if !proto.Equal(m, b.GetPortLevelMtls()[p]) {
					return false
				}
			}
			return true
		}()
}

// analyzeRequestAuthentications reports RequestAuthentications that
// select no workload (IST0127) or attach by targetRef (ZM0008).
func analyzeRequestAuthentications(c *context) {
	for _, r := range c.in.Snapshot.List(config.KindRequestAuthentication) {
		ra, ok := r.Spec.(*security.RequestAuthentication)
		if !ok {
			continue
		}
		refs := ra.GetTargetRefs()
		if ref := ra.GetTargetRef(); ref != nil {
			refs = append(refs, ref)
		}
		for _, ref := range refs {
			c.reportOn(TargetRefNotEnforced, r, ref.GetKind(), ref.GetName())
		}
		if len(refs) == 0 {
			c.checkSelectorMatches(r, ra.GetSelector().GetMatchLabels(), ra.GetSelector() != nil)
		}
	}
}
