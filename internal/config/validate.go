package config

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"
	telemetry "istio.io/api/telemetry/v1alpha1"
	typev1beta1 "istio.io/api/type/v1beta1"
)

// Validate checks r against Istio's validation rules for its kind (the
// rules of istiod's admission webhook and of the CRD schemas), and the
// stricter rules zmesh adds where Istio's leniency would silently change
// what a security policy means. It returns nil, or an error wrapping a
// *SourceError whose Err is a *ValidationError listing every problem.
func Validate(r Resource) error {
	_, err := validate(r)
	return err
}

// validate is Validate that also returns the warnings Istio gives for
// valid but suspicious resources.
func validate(r Resource) ([]string, error) {
	var c checker
	if r.Spec == nil {
		c.errorf("spec is missing")
	}
	checkDryRun(&c, r)
	switch spec := r.Spec.(type) {
	case nil:
	case *security.AuthorizationPolicy:
		validateAuthorizationPolicy(&c, spec)
	case *security.PeerAuthentication:
		validatePeerAuthentication(&c, spec)
	case *security.RequestAuthentication:
		validateRequestAuthentication(&c, spec)
	case *networking.ServiceEntry:
		validateServiceEntry(&c, spec)
	case *networking.WorkloadEntry:
		validateWorkloadEntry(&c, "spec", spec)
	case *telemetry.Telemetry:
		validateTelemetry(&c, spec)
	case *networking.DestinationRule:
		validateDestinationRule(&c, spec)
	case *networking.Sidecar:
		validateSidecar(&c, spec)
	case *networking.VirtualService:
		validateVirtualService(&c, spec)
	case *networking.Gateway:
		validateGateway(&c, spec)
	default:
		c.errorf("unsupported spec type %T for kind %s", r.Spec, r.Kind)
	}
	if len(c.problems) == 0 {
		return c.warnings, nil
	}
	return c.warnings, &SourceError{Source: r.Source, Kind: r.Kind, Key: r.Key(), Err: &ValidationError{Problems: c.problems}}
}

// checker collects problems so that one run reports all of them.
type checker struct {
	problems []string
	warnings []string
}

func (c *checker) errorf(format string, args ...any) {
	c.problems = append(c.problems, fmt.Sprintf(format, args...))
}

func (c *checker) warnf(format string, args ...any) {
	c.warnings = append(c.warnings, fmt.Sprintf(format, args...))
}

// dryRunAnnotation marks an AuthorizationPolicy to be evaluated and logged
// but not enforced. Istio accepts it only on ALLOW and DENY policies.
const dryRunAnnotation = "istio.io/dry-run"

func checkDryRun(c *checker, r Resource) {
	v, ok := r.Annotations[dryRunAnnotation]
	if !ok {
		return
	}
	ap, isAuthz := r.Spec.(*security.AuthorizationPolicy)
	if !isAuthz {
		c.errorf("annotation %s is only supported on AuthorizationPolicy", dryRunAnnotation)
		return
	}
	switch ap.GetAction() {
	case security.AuthorizationPolicy_ALLOW, security.AuthorizationPolicy_DENY:
		if _, err := strconv.ParseBool(v); err != nil {
			c.errorf("annotation %s must be true or false, not %q", dryRunAnnotation, v)
		}
	default:
		c.errorf("annotation %s is only supported with action ALLOW or DENY, not %s", dryRunAnnotation, ap.GetAction())
	}
}

// checkSelector applies Istio's workload selector rules: no empty keys, no
// wildcards (selectors match exact labels). An empty selector is legal but
// selects the whole namespace, which is rarely what its author meant.
func checkSelector(c *checker, path string, s *typev1beta1.WorkloadSelector) {
	if s == nil {
		return
	}
	if len(s.GetMatchLabels()) == 0 {
		c.warnf("%s: workload selector specified without labels: applies to every workload in the namespace", path)
	}
	checkLabels(c, path+".matchLabels", s.GetMatchLabels(), true)
}

func checkLabels(c *checker, path string, labels map[string]string, noWildcards bool) {
	for _, k := range sortedKeys(labels) {
		v := labels[k]
		if k == "" {
			c.errorf("%s: empty label key is not supported", path)
		}
		if noWildcards && (strings.Contains(k, "*") || strings.Contains(v, "*")) {
			c.errorf("%s: wildcard is not supported in selector: %q", path, k+"="+v)
		}
		if len(v) > 63 {
			c.errorf("%s[%s]: label value longer than 63 characters", path, k)
		}
	}
}

// checkOneOfSelector enforces the CRD rule that a policy binds to workloads
// either by selector or by targetRef(s), never both: with both, which one
// wins would be a guess.
func checkOneOfSelector(c *checker, s *typev1beta1.WorkloadSelector, ref *typev1beta1.PolicyTargetReference, refs []*typev1beta1.PolicyTargetReference) {
	set := 0
	if s != nil {
		set++
	}
	if ref != nil {
		set++
	}
	if len(refs) > 0 {
		set++
	}
	if set > 1 {
		c.errorf("only one of targetRefs or selector can be set")
	}
	checkTargetRef(c, "spec.targetRef", ref)
	for i, r := range refs {
		checkTargetRef(c, fmt.Sprintf("spec.targetRefs[%d]", i), r)
	}
}

// allowedTargetKinds are the group/kind pairs Istio lets a policy target.
var allowedTargetKinds = map[string]bool{
	"/Service":                          true,
	"core/Service":                      true,
	"networking.istio.io/ServiceEntry":  true,
	"gateway.networking.k8s.io/Gateway": true,
}

func checkTargetRef(c *checker, path string, r *typev1beta1.PolicyTargetReference) {
	if r == nil {
		return
	}
	if r.GetName() == "" {
		c.errorf("%s: name must be set", path)
	}
	if r.GetNamespace() != "" {
		c.errorf("%s: namespace must not be set; cross namespace referencing is not supported", path)
	}
	if !allowedTargetKinds[r.GetGroup()+"/"+r.GetKind()] {
		c.errorf("%s: must refer to a Service, ServiceEntry (networking.istio.io) or Gateway (gateway.networking.k8s.io), not %s/%s", path, r.GetGroup(), r.GetKind())
	}
}

// checkIPs accepts IP addresses and CIDR ranges, as Istio does.
func checkIPs(c *checker, path string, values []string) {
	for i, v := range values {
		if err := checkIP(v); err != nil {
			c.errorf("%s[%d]: %v", path, i, err)
		}
	}
}

func checkIP(v string) error {
	if strings.Contains(v, "/") {
		if _, err := netip.ParsePrefix(v); err != nil {
			return fmt.Errorf("bad CIDR range %q", v)
		}
		return nil
	}
	if _, err := netip.ParseAddr(v); err != nil {
		return fmt.Errorf("bad IP address %q", v)
	}
	return nil
}

// checkPortString requires a decimal port in 1..65535. (Istio accepts 0,
// which no connection can have; zmesh rejects it as a likely mistake.)
func checkPortString(v string) error {
	p, err := strconv.ParseUint(v, 10, 32)
	if err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("bad port %q: must be a number in 1..65535", v)
	}
	return nil
}

func checkPort(c *checker, path string, p uint32) {
	if p < 1 || p > 65535 {
		c.errorf("%s: port %d out of range 1..65535", path, p)
	}
}

// checkNotEmpty rejects empty strings in a list: Istio does, because an
// empty value matches nothing (or, for some matchers, everything).
func checkNotEmpty(c *checker, path string, values []string) {
	for i, v := range values {
		if v == "" {
			c.errorf("%s[%d]: empty value not allowed", path, i)
		}
	}
}

// checkWildcard requires that `*` appears at most once, and only alone,
// as a prefix or as a suffix: the only forms Istio's matchers give a
// meaning (presence, suffix and prefix match). Istio treats any other `*`
// literally, so "ns/*/sa/x" would silently match nothing; zmesh rejects it.
func checkWildcard(v string) error {
	n := strings.Count(v, "*")
	if n == 0 || (n == 1 && (v[0] == '*' || v[len(v)-1] == '*')) {
		return nil
	}
	return fmt.Errorf("%q: wildcard * is only supported alone, as a prefix or as a suffix", v)
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
