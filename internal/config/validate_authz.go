package config

import (
	"fmt"
	"strings"

	security "istio.io/api/security/v1beta1"
)

// validateAuthorizationPolicy applies istiod's AuthorizationPolicy rules.
func validateAuthorizationPolicy(c *checker, in *security.AuthorizationPolicy) {
	checkOneOfSelector(c, in.GetSelector(), in.GetTargetRef(), in.GetTargetRefs())
	checkSelector(c, "spec.selector", in.GetSelector())

	action := in.GetAction()
	if security.AuthorizationPolicy_Action_name[int32(action)] == "" {
		c.errorf("spec.action: unknown action %d", action)
	}
	switch {
	case action == security.AuthorizationPolicy_CUSTOM:
		if in.Rules == nil {
			c.errorf("CUSTOM action without `rules` is meaningless as it will never be triggered, add an empty rule `{}` if you want it be triggered for every request")
		} else if in.GetProvider().GetName() == "" {
			c.errorf("CUSTOM action requires `provider.name`")
		}
	case in.GetProvider() != nil:
		c.errorf("`provider` must not be set with action %s, only with CUSTOM", action)
	}
	if action == security.AuthorizationPolicy_DENY && in.Rules == nil {
		c.errorf("DENY action without `rules` is meaningless as it will never be triggered, add an empty rule `{}` if you want it be triggered for every request")
	}

	for i, rule := range in.GetRules() {
		path := fmt.Sprintf("spec.rules[%d]", i)
		if rule == nil {
			c.errorf("%s: must not be null", path)
			continue
		}
		r := ruleShape{}
		for j, from := range rule.GetFrom() {
			checkFrom(c, fmt.Sprintf("%s.from[%d]", path, j), from, action, &r)
		}
		for j, to := range rule.GetTo() {
			checkTo(c, fmt.Sprintf("%s.to[%d]", path, j), to, &r)
		}
		for j, cond := range rule.GetWhen() {
			checkCondition(c, fmt.Sprintf("%s.when[%d]", path, j), cond, action)
		}
		// Istio's warning: a DENY rule made only of HTTP attributes cannot be
		// evaluated on a TCP connection, so it denies every TCP connection.
		if action == security.AuthorizationPolicy_DENY &&
			((r.from && !r.to && !r.tcpFrom) || (r.to && !r.tcpTo)) {
			c.warnf("%s: DENY rule uses only HTTP attributes: it will deny all traffic to TCP ports under its scope; specify the ports explicitly", path)
		}
	}
}

// ruleShape records which parts of a rule are set, for the TCP warning.
type ruleShape struct {
	from, to, tcpFrom, tcpTo bool
}

func checkFrom(c *checker, path string, from *security.Rule_From, action security.AuthorizationPolicy_Action, r *ruleShape) {
	src := from.GetSource()
	if src == nil {
		c.errorf("%s.source: must be set", path)
		return
	}
	path += ".source"
	r.from = true
	lists := []struct {
		name   string
		values []string
		kind   valueKind
		tcp    bool
	}{
		{"principals", src.Principals, wildcardValue, true},
		{"notPrincipals", src.NotPrincipals, wildcardValue, true},
		{"requestPrincipals", src.RequestPrincipals, wildcardValue, false},
		{"notRequestPrincipals", src.NotRequestPrincipals, wildcardValue, false},
		{"namespaces", src.Namespaces, wildcardValue, true},
		{"notNamespaces", src.NotNamespaces, wildcardValue, true},
		{"serviceAccounts", src.ServiceAccounts, wildcardValue, true},
		{"notServiceAccounts", src.NotServiceAccounts, wildcardValue, true},
		{"trustDomains", src.TrustDomains, wildcardValue, true},
		{"notTrustDomains", src.NotTrustDomains, wildcardValue, true},
		{"ipBlocks", src.IpBlocks, ipValue, true},
		{"notIpBlocks", src.NotIpBlocks, ipValue, true},
		{"remoteIpBlocks", src.RemoteIpBlocks, ipValue, true},
		{"notRemoteIpBlocks", src.NotRemoteIpBlocks, ipValue, true},
	}
	set := false
	for _, l := range lists {
		if len(l.values) == 0 {
			continue
		}
		set = true
		if l.tcp {
			r.tcpFrom = true
		}
		checkValues(c, path+"."+l.name, l.values, l.kind)
	}
	if !set {
		c.errorf("%s: must not be empty: set at least one field", path)
	}
	if (len(src.ServiceAccounts) > 0 || len(src.NotServiceAccounts) > 0) &&
		(len(src.Principals) > 0 || len(src.NotPrincipals) > 0 || len(src.Namespaces) > 0 || len(src.NotNamespaces) > 0) {
		c.errorf("%s: cannot set serviceAccounts with namespaces or principals", path)
	}
	if action == security.AuthorizationPolicy_CUSTOM {
		for _, f := range []struct {
			name string
			n    int
		}{
			{"namespaces", len(src.Namespaces)}, {"notNamespaces", len(src.NotNamespaces)},
			{"principals", len(src.Principals)}, {"notPrincipals", len(src.NotPrincipals)},
			{"requestPrincipals", len(src.RequestPrincipals)}, {"notRequestPrincipals", len(src.NotRequestPrincipals)},
		} {
			if f.n > 0 {
				c.errorf("%s.%s: not supported with CUSTOM action", path, f.name)
			}
		}
	}
}

func checkTo(c *checker, path string, to *security.Rule_To, r *ruleShape) {
	op := to.GetOperation()
	if op == nil {
		c.errorf("%s.operation: must be set", path)
		return
	}
	path += ".operation"
	r.to = true
	lists := []struct {
		name   string
		values []string
		kind   valueKind
	}{
		{"hosts", op.Hosts, wildcardValue},
		{"notHosts", op.NotHosts, wildcardValue},
		{"ports", op.Ports, portValue},
		{"notPorts", op.NotPorts, portValue},
		{"methods", op.Methods, wildcardValue},
		{"notMethods", op.NotMethods, wildcardValue},
		{"paths", op.Paths, pathValue},
		{"notPaths", op.NotPaths, pathValue},
	}
	set := false
	for _, l := range lists {
		if len(l.values) > 0 {
			set = true
			checkValues(c, path+"."+l.name, l.values, l.kind)
		}
	}
	if len(op.Ports) > 0 || len(op.NotPorts) > 0 {
		r.tcpTo = true
	}
	if !set {
		c.errorf("%s: must not be empty: set at least one field", path)
	}
}

// valueKind says how the strings of a matcher field are checked.
type valueKind int

const (
	wildcardValue valueKind = iota // exact, "*", "*suffix" or "prefix*"
	ipValue                        // IP address or CIDR range
	portValue                      // 1..65535
	pathValue                      // like wildcardValue, or an Envoy path template
)

func checkValues(c *checker, path string, values []string, kind valueKind) {
	for i, v := range values {
		p := fmt.Sprintf("%s[%d]", path, i)
		if v == "" {
			c.errorf("%s: empty value not allowed", p)
			continue
		}
		var err error
		switch kind {
		case wildcardValue:
			err = checkWildcard(v)
		case ipValue:
			err = checkIP(v)
		case portValue:
			err = checkPortString(v)
		case pathValue:
			err = checkPath(v)
		}
		if err != nil {
			c.errorf("%s: %v", p, err)
		}
	}
}

// checkPath accepts the path forms Istio supports: exact, prefix and
// suffix matches, and path templates built only of "{*}" (one segment) and
// "{**}" (any number of segments). Named variables ("{name}") and bare
// globs inside a template are not supported by Istio.
func checkPath(v string) error {
	if !strings.Contains(v, "{*}") && !strings.Contains(v, "{**}") {
		return checkWildcard(v)
	}
	rest := strings.ReplaceAll(strings.ReplaceAll(v, "{**}", ""), "{*}", "")
	if strings.ContainsAny(rest, "*{}") {
		return fmt.Errorf("%q: invalid or unsupported path template: only {*} and {**} are supported", v)
	}
	return nil
}

// Condition keys Istio supports in `when`, and how their values are checked.
var conditionKeys = map[string]valueKind{
	"source.ip":              ipValue,
	"remote.ip":              ipValue,
	"destination.ip":         ipValue,
	"destination.port":       portValue,
	"source.namespace":       wildcardValue,
	"source.principal":       wildcardValue,
	"request.auth.principal": wildcardValue,
	"request.auth.audiences": wildcardValue,
	"request.auth.presenter": wildcardValue,
	"connection.sni":         wildcardValue,
}

// conditionMapKeys are the keys written PREFIX[NAME].
var conditionMapKeys = []string{"request.headers", "request.auth.claims", "experimental.envoy.filters."}

func checkCondition(c *checker, path string, cond *security.Condition, action security.AuthorizationPolicy_Action) {
	key := cond.GetKey()
	if key == "" {
		c.errorf("%s.key: must be set", path)
		return
	}
	if len(cond.GetValues()) == 0 && len(cond.GetNotValues()) == 0 {
		c.errorf("%s: at least one of values or notValues must be set for key %s", path, key)
		return
	}
	kind, err := conditionKind(key)
	if err != nil {
		c.errorf("%s.key: %v", path, err)
		return
	}
	checkValues(c, path+".values", cond.GetValues(), kind)
	checkValues(c, path+".notValues", cond.GetNotValues(), kind)
	if action == security.AuthorizationPolicy_CUSTOM &&
		(key == "source.namespace" || key == "source.principal" || strings.HasPrefix(key, "request.auth.")) {
		c.errorf("%s.key: %s is not supported with CUSTOM action", path, key)
	}
}

func conditionKind(key string) (valueKind, error) {
	if k, ok := conditionKeys[key]; ok {
		return k, nil
	}
	for _, prefix := range conditionMapKeys {
		if strings.HasPrefix(key, prefix) {
			open := strings.Index(key, "[")
			if strings.HasSuffix(key, "]") && open > 0 && open < len(key)-2 {
				return wildcardValue, nil
			}
			return 0, fmt.Errorf("bad key %q: should have the form %s[NAME]", key, strings.TrimSuffix(prefix, "."))
		}
	}
	switch {
	case key == "destination.namespace":
		return 0, fmt.Errorf("attribute %s is replaced by the policy's metadata.namespace", key)
	case strings.HasPrefix(key, "destination.labels"):
		return 0, fmt.Errorf("attribute %s is replaced by the workload selector", key)
	case key == "destination.name" || key == "destination.user":
		return 0, fmt.Errorf("deprecated attribute %s: only supported in v1alpha1", key)
	}
	return 0, fmt.Errorf("unknown attribute %q", key)
}
