package analyze

import (
	"fmt"
	"strings"

	security "istio.io/api/security/v1beta1"

	"github.com/zmesh/zmesh/internal/authz"
	"github.com/zmesh/zmesh/internal/config"
)

// analyzeAuthorizationPolicies checks each AuthorizationPolicy: Istio's
// checks (IST0101 for source namespaces that do not exist, IST0127 for a
// selector that matches nothing) and zmesh's (ZM0003-ZM0005, ZM0007,
// ZM0008, ZM0009, and IST0101 for an unknown CUSTOM provider or target).
func analyzeAuthorizationPolicies(c *context) {
	norm := authz.NormalizeBase
	if pn := c.in.Mesh.GetPathNormalization(); pn != nil {
		if n, err := authz.ParsePathNormalization(pn.GetNormalization().String()); err == nil {
			norm = n
		}
	}
	opts := authz.Options{
		TrustDomain:        c.in.trustDomain(),
		TrustDomainAliases: c.in.Mesh.GetTrustDomainAliases(),
		PathNormalization:  norm,
	}
	for _, r := range c.in.Snapshot.List(config.KindAuthorizationPolicy) {
		ap, ok := r.Spec.(*security.AuthorizationPolicy)
		if !ok {
			continue
		}
		c.checkSourceNamespaces(r, ap)
		targeted := ap.GetTargetRef() != nil || len(ap.GetTargetRefs()) > 0
		if targeted {
			c.checkTargets(r, ap)
		} else {
			c.checkSelectorMatches(r, ap.GetSelector().GetMatchLabels(), ap.GetSelector() != nil)
		}
		c.checkTrustDomains(r, ap)
		if ap.GetAction() == security.AuthorizationPolicy_CUSTOM {
			c.checkProvider(r, ap)
		}
		if !targeted {
			c.checkHTTPOnTCP(r, ap)
		}
		c.checkDenyPaths(r, ap, norm)
		if _, err := authz.Compile([]config.Resource{r}, opts); err != nil {
			c.reportOn(InvalidPolicy, r, err)
		}
	}
}

// checkSourceNamespaces is Istio's IST0101 for namespaces and
// notNamespaces that match no namespace (with Istio's prefix and suffix
// wildcards).
func (c *context) checkSourceNamespaces(r config.Resource, ap *security.AuthorizationPolicy) {
	for _, rule := range ap.GetRules() {
		for _, from := range rule.GetFrom() {
			src := from.GetSource()
			for _, ns := range append(append([]string(nil), src.GetNamespaces()...), src.GetNotNamespaces()...) {
				if !c.namespaceMatches(ns) {
					c.reportOn(ReferencedResourceNotFound, r, "namespace", ns)
				}
			}
		}
	}
}

func (c *context) namespaceMatches(exp string) bool {
	for ns := range c.namespaces {
		switch {
		case exp == "*":
			return true
		case strings.HasPrefix(exp, "*") && strings.HasSuffix(ns, exp[1:]),
			strings.HasSuffix(exp, "*") && strings.HasPrefix(ns, exp[:len(exp)-1]),
			strings.EqualFold(ns, exp):
			return true
		}
	}
	return false
}

// checkTargets reports a targetRef policy: zmesh runs no gateway or
// waypoint, where Istio enforces those, so it is enforced nowhere (ZM0008);
// and a target Service or ServiceEntry that does not exist (IST0101).
func (c *context) checkTargets(r config.Resource, ap *security.AuthorizationPolicy) {
	refs := ap.GetTargetRefs()
	if ref := ap.GetTargetRef(); ref != nil {
		refs = append(refs, ref)
	}
	for _, ref := range refs {
		c.reportOn(TargetRefNotEnforced, r, ref.GetKind(), ref.GetName())
		switch ref.GetKind() {
		case "Service":
			if !c.serviceExists(r.Namespace, ref.GetName()) {
				c.reportOn(ReferencedResourceNotFound, r, "service", ref.GetName())
			}
		case "ServiceEntry":
			if !c.serviceEntryExists(r.Namespace, ref.GetName()) {
				c.reportOn(ReferencedResourceNotFound, r, "service entry", ref.GetName())
			}
		}
	}
}

func (c *context) serviceExists(ns, name string) bool {
	for _, s := range c.in.Services {
		if s.Namespace == ns && s.Name == name {
			return true
		}
	}
	for _, w := range c.workloads {
		if w.Namespace != ns {
			continue
		}
		for _, s := range w.Services {
			if s == name {
				return true
			}
		}
	}
	return false
}

func (c *context) serviceEntryExists(ns, name string) bool {
	for _, r := range c.in.Snapshot.List(config.KindServiceEntry) {
		if r.Namespace == ns && r.Name == name {
			return true
		}
	}
	return false
}

// checkTrustDomains reports principals whose trust domain the mesh does
// not accept (ZM0005): the proxy verifies peers against the bundles of
// the mesh's trust domain and aliases only, so the value never matches.
// "cluster.local" always stands for the mesh's own trust domain.
func (c *context) checkTrustDomains(r config.Resource, ap *security.AuthorizationPolicy) {
	td := c.in.trustDomain()
	accepted := map[string]bool{td: true, "cluster.local": true}
	for _, a := range c.in.Mesh.GetTrustDomainAliases() {
		accepted[a] = true
	}
	check := func(path string, values []string) {
		for i, v := range values {
			p := strings.TrimPrefix(v, "spiffe://")
			slash := strings.IndexByte(p, '/')
			if strings.HasPrefix(p, "*") || slash <= 0 {
				continue
			}
			if d := p[:slash]; !accepted[d] {
				c.reportOn(UnknownTrustDomain, r, path, i, v, d, td)
			}
		}
	}
	for i, rule := range ap.GetRules() {
		for j, from := range rule.GetFrom() {
			path := fmt.Sprintf("rules[%d].from[%d].source.", i, j)
			check(path+"principals", from.GetSource().GetPrincipals())
			check(path+"notPrincipals", from.GetSource().GetNotPrincipals())
		}
		for j, w := range rule.GetWhen() {
			if w.GetKey() == "source.principal" {
				path := fmt.Sprintf("rules[%d].when[%d].", i, j)
				check(path+"values", w.GetValues())
				check(path+"notValues", w.GetNotValues())
			}
		}
	}
}

// checkProvider reports a CUSTOM policy whose provider the mesh config
// does not define (IST0101): proxies deny what it matches.
func (c *context) checkProvider(r config.Resource, ap *security.AuthorizationPolicy) {
	name := ap.GetProvider().GetName()
	if name == "" {
		return // a validation error
	}
	for _, p := range c.in.Mesh.GetExtensionProviders() {
		if p.GetName() == name {
			return
		}
	}
	c.reportOn(ReferencedResourceNotFound, r, "extension provider", name)
}

// httpOnlyFields names the HTTP-only fields a rule uses, as Istio's
// conditions page lists them: on TCP traffic they have no value.
func httpOnlyFields(rule *security.Rule) []string {
	var out []string
	add := func(name string, n int) {
		if n > 0 {
			for _, x := range out {
				if x == name {
					return
				}
			}
			out = append(out, name)
		}
	}
	for _, f := range rule.GetFrom() {
		s := f.GetSource()
		add("requestPrincipals", len(s.GetRequestPrincipals()))
		add("notRequestPrincipals", len(s.GetNotRequestPrincipals()))
	}
	for _, t := range rule.GetTo() {
		o := t.GetOperation()
		add("hosts", len(o.GetHosts()))
		add("notHosts", len(o.GetNotHosts()))
		add("methods", len(o.GetMethods()))
		add("notMethods", len(o.GetNotMethods()))
		add("paths", len(o.GetPaths()))
		add("notPaths", len(o.GetNotPaths()))
	}
	for _, w := range rule.GetWhen() {
		if strings.HasPrefix(w.GetKey(), "request.") {
			add(w.GetKey(), 1)
		}
	}
	return out
}

// rulePorts returns the ports a rule's operations name (nil: any port).
// An operation without ports makes the rule apply to every port.
func rulePorts(rule *security.Rule) []uint32 {
	var out []uint32
	for _, t := range rule.GetTo() {
		ps := t.GetOperation().GetPorts()
		if len(ps) == 0 {
			return nil
		}
		for _, p := range ps {
			var n uint32
			if _, err := fmt.Sscanf(p, "%d", &n); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// checkHTTPOnTCP reports rules that use HTTP-only fields where the
// selected workloads serve TCP (ZM0003, ZM0004). Istio drops such an
// ALLOW rule on TCP traffic (it never matches), and drops the HTTP-only
// fields of other rules, which then match every connection to the port.
func (c *context) checkHTTPOnTCP(r config.Resource, ap *security.AuthorizationPolicy) {
	ws := c.selected(r.Namespace, ap.GetSelector().GetMatchLabels(), ap.GetSelector() != nil)
	type tcpPort struct {
		port     uint32
		workload string
	}
	var tcp []tcpPort
	seen := map[uint32]bool{}
	allTCP, anyPort := true, false
	for _, w := range ws {
		for _, p := range c.workloadPorts(w) {
			anyPort = true
			if !p.tcp {
				allTCP = false
				continue
			}
			if !seen[p.port] {
				seen[p.port] = true
				tcp = append(tcp, tcpPort{p.port, "workload " + c.workloadKey(w)})
			}
		}
	}
	if len(tcp) == 0 {
		return
	}
	action := ap.GetAction().String()
	for i, rule := range ap.GetRules() {
		fields := httpOnlyFields(rule)
		if len(fields) == 0 {
			continue
		}
		ports := rulePorts(rule)
		for _, tp := range tcp {
			if ports != nil && !containsPort(ports, tp.port) {
				continue
			}
			if ap.GetAction() == security.AuthorizationPolicy_ALLOW {
				// Without a port, an ALLOW rule meant for HTTP ports is
				// fine next to TCP ones; it is a mistake when every port
				// is TCP or when it names the TCP port.
				if ports == nil && !(allTCP && anyPort) {
					continue
				}
				c.reportOn(AllowRuleHTTPOnTCP, r, i, strings.Join(fields, ", "), tp.port, tp.workload)
				continue
			}
			c.reportOn(DenyRuleHTTPOnTCP, r, action, i, strings.Join(fields, ", "), tp.port, tp.workload)
		}
	}
}

func containsPort(ports []uint32, p uint32) bool {
	for _, x := range ports {
		if x == p {
			return true
		}
	}
	return false
}

// checkDenyPaths reports DENY rules on paths that a request can dodge
// under pathNormalization BASE or NONE (ZM0007), with a request that does.
func (c *context) checkDenyPaths(r config.Resource, ap *security.AuthorizationPolicy, norm authz.PathNormalization) {
	if ap.GetAction() != security.AuthorizationPolicy_DENY || (norm != authz.NormalizeBase && norm != authz.NormalizeNone) {
		return
	}
	for i, rule := range ap.GetRules() {
		var paths []string
		example := ""
		for _, t := range rule.GetTo() {
			for _, p := range t.GetOperation().GetPaths() {
				paths = append(paths, p)
				if example == "" && strings.HasPrefix(p, "/") && !strings.Contains(p, "{") {
					example = bypassExample(strings.TrimSuffix(p, "*"), norm)
				}
			}
		}
		if example != "" {
			c.reportOn(DenyPathBypassable, r, ap.GetAction().String(), i, quoteList(paths), norm.String(), example)
		}
	}
}

// bypassExample returns requests for path that a DENY on it does not
// match under norm.
func bypassExample(path string, norm authz.PathNormalization) string {
	ex := fmt.Sprintf("%q", "/"+path)
	if norm == authz.NormalizeNone {
		ex += fmt.Sprintf(" or %q", "/x/.."+path)
	}
	return ex
}
