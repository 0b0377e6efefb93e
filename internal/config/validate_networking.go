package config

import (
	"fmt"
	"regexp"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
)

// validateServiceEntry applies the ServiceEntry rules that matter to
// zmesh: hosts are names, ports are valid and unique, and endpoints come
// either inline or from a workload selector. (Istio checks more, mostly
// about DNS resolution, which zmesh does not do.)
func validateServiceEntry(c *checker, in *networking.ServiceEntry) {
	if len(in.GetHosts()) == 0 {
		c.errorf("spec.hosts: at least one host is required")
	}
	for i, h := range in.GetHosts() {
		if err := checkHost(h); err != nil {
			c.errorf("spec.hosts[%d]: %v", i, err)
		}
	}
	checkIPs(c, "spec.addresses", in.GetAddresses())
	numbers := map[uint32]bool{}
	names := map[string]bool{}
	for i, p := range in.GetPorts() {
		path := fmt.Sprintf("spec.ports[%d]", i)
		checkPort(c, path+".number", p.GetNumber())
		if numbers[p.GetNumber()] {
			c.errorf("%s.number: port %d is used twice", path, p.GetNumber())
		}
		numbers[p.GetNumber()] = true
		if n := p.GetName(); n != "" {
			if names[n] {
				c.errorf("%s.name: port name %q is used twice", path, n)
			}
			names[n] = true
		}
		if p.GetTargetPort() != 0 {
			checkPort(c, path+".targetPort", p.GetTargetPort())
		}
	}
	if in.GetWorkloadSelector() != nil && len(in.GetEndpoints()) > 0 {
		c.errorf("only one of workloadSelector or endpoints is allowed in a ServiceEntry")
	}
	if s := in.GetWorkloadSelector(); s != nil {
		checkLabels(c, "spec.workloadSelector.labels", s.GetLabels(), true)
	}
	for i, e := range in.GetEndpoints() {
		validateWorkloadEntry(c, fmt.Sprintf("spec.endpoints[%d]", i), e)
	}
	for i, san := range in.GetSubjectAltNames() {
		if san == "" {
			c.errorf("spec.subjectAltNames[%d]: empty value not allowed", i)
		}
	}
}

// validateWorkloadEntry checks one workload entry, standalone or inside a
// ServiceEntry. An address may be omitted only when a network is named
// (the workload is reached through that network's gateway).
func validateWorkloadEntry(c *checker, path string, in *networking.WorkloadEntry) {
	addr := in.GetAddress()
	switch {
	case addr == "" && in.GetNetwork() == "":
		c.errorf("%s.address: must be set unless network is set", path)
	case addr == "":
	case strings.HasPrefix(addr, "unix://"):
		if !strings.HasPrefix(addr, "unix:///") && !strings.HasPrefix(addr, "unix://@") {
			c.errorf("%s.address: %q is not an absolute unix socket path", path, addr)
		}
	default:
		if checkIP(addr) != nil && checkHost(addr) != nil {
			c.errorf("%s.address: %q is neither an IP address nor a host name", path, addr)
		}
	}
	for _, name := range sortedKeys(in.GetPorts()) {
		checkPort(c, fmt.Sprintf("%s.ports[%s]", path, name), in.GetPorts()[name])
	}
	checkLabels(c, path+".labels", in.GetLabels(), false)
}

var hostLabel = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_]*[A-Za-z0-9])?$`)

// checkHost accepts a DNS name, optionally with a leading "*." wildcard.
func checkHost(h string) error {
	if h == "" {
		return fmt.Errorf("empty host")
	}
	if h == "*" {
		return fmt.Errorf("host %q is not allowed: it would capture all traffic", h)
	}
	name := strings.TrimPrefix(h, "*.")
	if len(name) > 253 {
		return fmt.Errorf("host %q is longer than 253 characters", h)
	}
	for _, label := range strings.Split(strings.TrimSuffix(name, "."), ".") {
		if len(label) > 63 || !hostLabel.MatchString(label) {
			return fmt.Errorf("host %q is not a valid DNS name (a wildcard is only allowed as a leading \"*.\")", h)
		}
	}
	return nil
}
