package config

import (
	"fmt"
	"slices"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
)

// validateSidecar applies Istio's rules for a Sidecar's egress hosts
// ("namespace/dnsName", namespace "*", "." or "~" or a name, dnsName "*",
// "*.suffix" or a name) and refuses what zmesh does not implement (ingress
// listeners, egress ports and bind addresses, captureMode) rather than
// accept it unenforced: a Sidecar narrows what a proxy may reach, and a
// setting silently ignored would leave it wider than its author meant.
func validateSidecar(c *checker, in *networking.Sidecar) {
	if sel := in.GetWorkloadSelector(); sel != nil {
		if len(sel.GetLabels()) == 0 {
			c.warnf("spec.workloadSelector: no labels: applies to every workload in the namespace")
		}
		checkLabels(c, "spec.workloadSelector.labels", sel.GetLabels(), true)
	}
	if len(in.GetIngress()) > 0 {
		c.errorf("spec.ingress: ingress listeners are not supported by zmesh")
	}
	if len(in.GetEgress()) == 0 {
		c.warnf("spec.egress: no egress listener: the proxy keeps every host the mesh exports to it")
	}
	for i, e := range in.GetEgress() {
		path := fmt.Sprintf("spec.egress[%d]", i)
		if e.GetPort() != nil || e.GetBind() != "" || e.GetCaptureMode() != networking.CaptureMode_DEFAULT {
			c.errorf("%s: port, bind and captureMode are not supported by zmesh (egress hosts apply to every port)", path)
		}
		if len(e.GetHosts()) == 0 {
			c.errorf("%s.hosts: at least one host is required", path)
		}
		for j, h := range e.GetHosts() {
			if err := CheckSidecarHost(h); err != nil {
				c.errorf("%s.hosts[%d]: %v", path, j, err)
			}
		}
	}
	switch m := in.GetOutboundTrafficPolicy().GetMode(); m {
	case networking.OutboundTrafficPolicy_REGISTRY_ONLY, networking.OutboundTrafficPolicy_ALLOW_ANY:
	default:
		c.errorf("spec.outboundTrafficPolicy.mode: %v is not supported", m)
	}
	if in.GetOutboundTrafficPolicy().GetEgressProxy() != nil {
		c.errorf("spec.outboundTrafficPolicy.egressProxy is not supported by zmesh")
	}
}

// CheckSidecarHost checks one Sidecar egress host, "namespace/dnsName".
func CheckSidecarHost(h string) error {
	ns, name, ok := strings.Cut(h, "/")
	if !ok {
		return fmt.Errorf("host %q must be namespace/dnsName (\"*/\" for any namespace, \"./\" for the Sidecar's)", h)
	}
	return checkNamespacedHost(h, ns, name, "*", ".", "~")
}

// checkNamespacedHost checks the parts of a host h written
// "namespace/dnsName", as Sidecar egress hosts and Gateway server hosts
// are: the namespace one of specials or a namespace name, the dnsName
// "*", "*.suffix" or a name.
func checkNamespacedHost(h, ns, name string, specials ...string) error {
	if !slices.Contains(specials, ns) {
		if err := checkNamespace(ns); err != nil {
			return fmt.Errorf("host %q: %v", h, err)
		}
	}
	if name == "*" {
		return nil
	}
	if err := checkHost(name); err != nil {
		return fmt.Errorf("host %q: %v", h, err)
	}
	return nil
}
