package authz

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	securityv1beta1 "istio.io/api/security/v1beta1"

	"github.com/zmesh/zmesh/internal/config"
)

// DryRunAnnotation marks a policy to be evaluated but not enforced.
const DryRunAnnotation = "istio.io/dry-run"

// Compile turns the AuthorizationPolicies that apply to one workload (see
// [Select]) into an Engine. It is meant to run once per config push.
//
// Compile is strict where Istio's validation is: a policy Istio would
// reject (an empty source, a malformed IP block or port, an unknown
// condition key, an invalid path template, ...) is an error, and no Engine
// is returned, so the caller keeps its last good one rather than enforcing a
// partial policy set. The error names every offending policy and rule.
func Compile(policies []config.Resource, opts Options) (*Engine, error) {
	c := compiler{tds: newTrustDomains(opts)}
	var errs []error
	var compiled []*policy
	for _, res := range policies {
		p, err := c.policy(res)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		compiled = append(compiled, p)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	checkProviders(compiled, opts.Providers)
	var m model
	for _, p := range compiled {
		m.add(p)
	}
	return newEngine(&m, opts.PathNormalization), nil
}

// Validate reports whether one AuthorizationPolicy resource would compile,
// with the same messages as Compile. The config package may call it to
// reject a resource when it is loaded.
func Validate(res config.Resource) error {
	_, err := (&compiler{tds: newTrustDomains(Options{})}).policy(res)
	return err
}

// checkProviders applies Istio's rules for CUSTOM providers: at most one
// provider per workload, and it must be known to the mesh. Otherwise the
// CUSTOM policies deny what they match.
func checkProviders(ps []*policy, known []string) {
	var first string
	multiple := false
	for _, p := range ps {
		if p.action != ActionCustom {
			continue
		}
		if first == "" {
			first = p.provider
		} else if p.provider != first {
			multiple = true
		}
	}
	for _, p := range ps {
		if p.action != ActionCustom {
			continue
		}
		p.invalidProvider = multiple || (known != nil && !contains(known, p.provider))
	}
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

type compiler struct {
	tds trustDomains
}

func (c *compiler) policy(res config.Resource) (*policy, error) {
	key := res.Meta.Key()
	spec, ok := res.Spec.(*securityv1beta1.AuthorizationPolicy)
	if !ok || spec == nil {
		return nil, fmt.Errorf("authz: %s: spec is %T, not an AuthorizationPolicy", key, res.Spec)
	}
	p := &policy{key: key}
	switch spec.GetAction() {
	case securityv1beta1.AuthorizationPolicy_ALLOW:
		p.action = ActionAllow
	case securityv1beta1.AuthorizationPolicy_DENY:
		p.action = ActionDeny
	case securityv1beta1.AuthorizationPolicy_AUDIT:
		p.action = ActionAudit
	case securityv1beta1.AuthorizationPolicy_CUSTOM:
		p.action = ActionCustom
	default:
		return nil, fmt.Errorf("authz: %s: unknown action %v", key, spec.GetAction())
	}
	if prov := spec.GetProvider(); prov != nil {
		if p.action != ActionCustom {
			return nil, fmt.Errorf("authz: %s: provider is only allowed with action CUSTOM", key)
		}
		p.provider = prov.GetName()
	}
	if p.action == ActionCustom && p.provider == "" {
		return nil, fmt.Errorf("authz: %s: action CUSTOM needs provider.name", key)
	}
	if v, ok := res.Meta.Annotations[DryRunAnnotation]; ok {
		// Istio reads the annotation with strconv.ParseBool semantics; an
		// unparsable value leaves the policy enforced.
		p.dryRun, _ = strconv.ParseBool(v)
	}
	var errs []error
	for i, r := range spec.GetRules() {
		rl, err := c.rule(r, res.Meta.Namespace)
		if err != nil {
			errs = append(errs, fmt.Errorf("rule %d: %w", i, err))
			continue
		}
		rl.index = i
		setReasons(&rl, p)
		p.rules = append(p.rules, rl)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("authz: %s: %w", key, errors.Join(errs...))
	}
	return p, nil
}

func setReasons(rl *rule, p *policy) {
	where := "policy " + p.key + " rule " + strconv.Itoa(rl.index)
	switch p.action {
	case ActionAllow:
		rl.reason = "allowed by " + where
	case ActionDeny:
		rl.reason = "denied by " + where
	case ActionAudit:
		rl.reason = "audited by " + where
	case ActionCustom:
		rl.reasonDenied = "denied by provider " + p.provider + " for CUSTOM " + where
		rl.reasonUnasked = "CUSTOM " + where + " requires provider " + p.provider + ", which was not consulted"
		rl.reasonInvalid = "denied by CUSTOM " + where + ": provider " + p.provider + " is unknown or not the only provider for the workload"
		rl.reason = "allowed by provider " + p.provider + " for CUSTOM " + where
	}
}

func (c *compiler) rule(r *securityv1beta1.Rule, ns string) (rule, error) {
	var rl rule
	if r == nil {
		return rl, nil
	}
	for i, f := range r.GetFrom() {
		cl, err := c.source(f.GetSource(), ns)
		if err != nil {
			return rl, fmt.Errorf("from[%d].source: %w", i, err)
		}
		rl.from = append(rl.from, cl)
	}
	for i, t := range r.GetTo() {
		cl, err := c.operation(t.GetOperation())
		if err != nil {
			return rl, fmt.Errorf("to[%d].operation: %w", i, err)
		}
		rl.to = append(rl.to, cl)
	}
	for i, w := range r.GetWhen() {
		cs, err := c.condition(w)
		if err != nil {
			return rl, fmt.Errorf("when[%d]: %w", i, err)
		}
		rl.when = append(rl.when, cs...)
	}
	for _, cl := range append(append([]clause{rl.when}, rl.from...), rl.to...) {
		for _, cd := range cl {
			if cd.attr.httpOnly() {
				rl.httpOnly = true
			}
		}
	}
	return rl, nil
}

// field is one positive or negative list of a source or operation.
type field struct {
	name   string
	values []string
	attr   attr
	not    bool
}

func (c *compiler) source(s *securityv1beta1.Source, ns string) (clause, error) {
	if s == nil {
		return nil, errors.New("must not be nil")
	}
	sas, notSAs := s.GetServiceAccounts(), s.GetNotServiceAccounts()
	if (len(sas) > 0 || len(notSAs) > 0) &&
		(len(s.GetPrincipals()) > 0 || len(s.GetNotPrincipals()) > 0 || len(s.GetNamespaces()) > 0 || len(s.GetNotNamespaces()) > 0) {
		return nil, errors.New("serviceAccounts cannot be set with principals or namespaces")
	}
	fields := []field{
		{"principals", c.tds.expand(s.GetPrincipals()), attrPrincipal, false},
		{"notPrincipals", c.tds.expand(s.GetNotPrincipals()), attrPrincipal, true},
		{"requestPrincipals", s.GetRequestPrincipals(), attrRequestPrincipal, false},
		{"notRequestPrincipals", s.GetNotRequestPrincipals(), attrRequestPrincipal, true},
		{"namespaces", s.GetNamespaces(), attrNamespace, false},
		{"notNamespaces", s.GetNotNamespaces(), attrNamespace, true},
		{"serviceAccounts", sas, attrServiceAccount, false},
		{"notServiceAccounts", notSAs, attrServiceAccount, true},
		{"ipBlocks", s.GetIpBlocks(), attrSourceIP, false},
		{"notIpBlocks", s.GetNotIpBlocks(), attrSourceIP, true},
		{"remoteIpBlocks", s.GetRemoteIpBlocks(), attrRemoteIP, false},
		{"notRemoteIpBlocks", s.GetNotRemoteIpBlocks(), attrRemoteIP, true},
		{"trustDomains", s.GetTrustDomains(), attrTrustDomain, false},
		{"notTrustDomains", s.GetNotTrustDomains(), attrTrustDomain, true},
	}
	return c.fields(fields, ns)
}

func (c *compiler) operation(o *securityv1beta1.Operation) (clause, error) {
	if o == nil {
		return nil, errors.New("must not be nil")
	}
	fields := []field{
		{"hosts", o.GetHosts(), attrHost, false},
		{"notHosts", o.GetNotHosts(), attrHost, true},
		{"ports", o.GetPorts(), attrDestPort, false},
		{"notPorts", o.GetNotPorts(), attrDestPort, true},
		{"methods", o.GetMethods(), attrMethod, false},
		{"notMethods", o.GetNotMethods(), attrMethod, true},
		{"paths", o.GetPaths(), attrPath, false},
		{"notPaths", o.GetNotPaths(), attrPath, true},
	}
	return c.fields(fields, "")
}

func (c *compiler) fields(fields []field, ns string) (clause, error) {
	var cl clause
	for _, f := range fields {
		if len(f.values) == 0 {
			continue
		}
		cd, err := c.cond(f.attr, f.not, f.values, ns)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.name, err)
		}
		cl = append(cl, cd)
	}
	if len(cl) == 0 {
		// Istio's validation: a source or operation with no field set is
		// an error, not a wildcard.
		return nil, errors.New("must not be empty")
	}
	return cl, nil
}

// cond compiles one list of values for attribute a.
func (c *compiler) cond(a attr, not bool, values []string, ns string) (cond, error) {
	cd := cond{attr: a, not: not}
	for _, v := range values {
		if v == "" {
			return cd, errors.New("empty value")
		}
	}
	switch a {
	case attrSourceIP, attrRemoteIP, attrDestIP:
		for _, v := range values {
			p, err := parseIPBlock(v)
			if err != nil {
				return cd, err
			}
			cd.nets = append(cd.nets, p)
		}
	case attrDestPort:
		for _, v := range values {
			n, err := strconv.ParseUint(v, 10, 16)
			if err != nil {
				return cd, fmt.Errorf("invalid port %q: must be an integer in [0, 65535]", v)
			}
			cd.ports = append(cd.ports, uint16(n))
		}
	case attrNamespace:
		cd.ns = newGlobMatcher(values)
	case attrServiceAccount:
		for _, v := range values {
			if strings.Contains(v, "*") {
				return cd, fmt.Errorf("service account %q: wildcards are not allowed", v)
			}
			parts := strings.Split(v, "/")
			switch {
			case len(parts) == 1:
				cd.sas = append(cd.sas, "/ns/"+ns+"/sa/"+v)
			case len(parts) == 2 && parts[0] != "" && parts[1] != "":
				cd.sas = append(cd.sas, "/ns/"+parts[0]+"/sa/"+parts[1])
			default:
				return cd, fmt.Errorf("service account %q: want NAMESPACE/NAME or NAME", v)
			}
		}
	case attrPath:
		var plain []string
		for _, v := range values {
			if !isPathTemplate(v) {
				plain = append(plain, v)
				continue
			}
			t, err := compilePathTemplate(v)
			if err != nil {
				return cd, err
			}
			cd.templates = append(cd.templates, t)
		}
		cd.str = newStrMatcher(plain, false)
	default:
		cd.str = newStrMatcher(values, a == attrHost)
	}
	return cd, nil
}

// parseIPBlock parses a single IP or a CIDR, as Istio's ipBlocks and the
// ip conditions accept.
func parseIPBlock(v string) (netip.Prefix, error) {
	if strings.Contains(v, "/") {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			return p, fmt.Errorf("invalid IP block %q", v)
		}
		return p.Masked(), nil
	}
	ip, err := netip.ParseAddr(v)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid IP address %q", v)
	}
	ip = ip.Unmap()
	return netip.PrefixFrom(ip, ip.BitLen()), nil
}
