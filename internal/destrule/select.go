package destrule

import (
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/labelsel"
)

// Client is the workload whose outbound traffic a rule would govern.
type Client struct {
	Namespace string
	Labels    map[string]string
	// RootNamespace is the mesh's config root namespace; "" means
	// istio-system, Istio's default.
	RootNamespace string
	// DNSDomain completes short hosts (NAME.NS.svc.DNSDomain); "" means
	// cluster.local.
	DNSDomain string
}

func (c Client) root() string {
	if c.RootNamespace == "" {
		return "istio-system"
	}
	return c.RootNamespace
}

func (c Client) domain() string {
	if c.DNSDomain == "" {
		return "cluster.local"
	}
	return c.DNSDomain
}

// Visible reports whether a proxy in namespace ns may ever be governed by
// r: when r's exportTo includes ns (empty or "*": every namespace; ".":
// r's own). Istio applies this to the rule's own namespace too: a rule
// exported only to another namespace does not govern its own. The
// control plane pushes a proxy only these.
func Visible(r config.Resource, ns string) bool {
	dr, ok := r.Spec.(*networking.DestinationRule)
	if !ok {
		return false
	}
	return ExportedTo(r, dr, ns)
}

// ExportedTo is config.ExportedTo for one rule.
func ExportedTo(r config.Resource, dr *networking.DestinationRule, ns string) bool {
	return config.ExportedTo(dr.GetExportTo(), r.Namespace, ns)
}

// Select returns the DestinationRule that governs c's traffic to host (a
// service's FQDN, of namespace hostNS), or nil for none. rules may hold
// any resources; only DestinationRules count. The lookup is Istio's:
//
//  1. the rules of c's own namespace visible to it (see Visible), by
//     most specific host match;
//  2. else the rules of hostNS exported to c's namespace;
//  3. else the rules of the root namespace exported to c's namespace.
//
// In the namespace that matched, a rule with a workloadSelector applies
// only to workloads of that same namespace whose labels it selects, and
// wins over a rule without selector; rules without selector for the same
// host are merged (see Rule). A short host ("reviews") means
// reviews.RULE_NAMESPACE.svc.DOMAIN, as in Istio.
func Select(rules []config.Resource, c Client, host, hostNS string) *Rule {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	try := func(ns string) (*Rule, bool) {
		var cands []config.Resource
		for _, r := range rules {
			dr, ok := r.Spec.(*networking.DestinationRule)
			if !ok || r.Namespace != ns || !ExportedTo(r, dr, c.Namespace) {
				continue
			}
			cands = append(cands, r)
		}
		best, ok := mostSpecific(cands, host, c.domain())
		if !ok {
			return nil, false
		}
		var catchAll []config.Resource
		for _, r := range cands {
			if fqdn(r, c.domain()) != best {
				continue
			}
			dr := r.Spec.(*networking.DestinationRule)
			if sel := dr.GetWorkloadSelector(); sel != nil {
				if r.Namespace == c.Namespace && labelsel.Matches(sel.GetMatchLabels(), c.Labels) {
					return newRule([]config.Resource{r}), true
				}
				continue
			}
			catchAll = append(catchAll, r)
		}
		if len(catchAll) == 0 {
			// Istio stops at the namespace whose rules name the host,
			// even when none of them selects this workload.
			return nil, true
		}
		return newRule(catchAll), true
	}
	if r, ok := try(c.Namespace); ok {
		return r
	}
	if hostNS != "" && hostNS != c.Namespace {
		if r, ok := try(hostNS); ok {
			return r
		}
	}
	if root := c.root(); root != c.Namespace && root != hostNS {
		if r, ok := try(root); ok {
			return r
		}
	}
	return nil
}

// fqdn is the host of rule r as Istio resolves it: a name without a dot
// is a service of the rule's namespace.
func fqdn(r config.Resource, domain string) string {
	h := strings.ToLower(strings.TrimSuffix(r.Spec.(*networking.DestinationRule).GetHost(), "."))
	if h == "" || strings.HasPrefix(h, "*") || strings.Contains(h, ".") {
		return h
	}
	return h + "." + r.Namespace + ".svc." + domain
}

// mostSpecific returns the host among rules' hosts that matches host best:
// host itself, else the longest wildcard that covers it.
func mostSpecific(rules []config.Resource, host, domain string) (string, bool) {
	best, found := "", false
	for _, r := range rules {
		h := fqdn(r, domain)
		switch {
		case h == host:
			return h, true
		case wildcardMatches(h, host) && (!found || len(h) > len(best)):
			best, found = h, true
		}
	}
	return best, found
}

// wildcardMatches reports whether pattern ("*" or "*.example.com") covers
// host.
func wildcardMatches(pattern, host string) bool {
	if pattern == "*" {
		return true
	}
	suffix, ok := strings.CutPrefix(pattern, "*")
	return ok && strings.HasSuffix(host, suffix) && len(host) > len(suffix)
}
