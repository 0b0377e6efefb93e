package analyze

import (
	"fmt"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/zmesh/zmesh/internal/config"
)

// analyzeDestinationRules checks DestinationRules, which proxies enforce
// (the control plane validates them as it does other kinds: what it would
// refuse is IST0106), for Istio's warnings: TLS to a destination without
// CA certificates, at the destination (IST0128) or a port (IST0129), and a
// host no service matches (IST0174, when services are known). Deprecated
// fields (IST0002) are found for every kind by analyzeDeprecated.
func analyzeDestinationRules(c *context) {
	hosts := c.knownHosts()
	for _, r := range c.in.Snapshot.List(config.KindDestinationRule) {
		dr, ok := r.Spec.(*networking.DestinationRule)
		if !ok {
			continue
		}
		res := resourceName(string(r.Kind), r.Namespace, r.Name)
		name := r.Key()
		verifies := func(tls *networking.ClientTLSSettings) bool {
			return tls.GetCaCertificates() != "" || tls.GetInsecureSkipVerify().GetValue() || (tls.GetCredentialName() != "" && dr.GetWorkloadSelector() != nil)
		}
		tls := dr.GetTrafficPolicy().GetTls()
		if m := tls.GetMode(); (m == networking.ClientTLSSettings_SIMPLE || m == networking.ClientTLSSettings_MUTUAL) && !verifies(tls) {
			c.report(NoServerCertificateVerificationDestinationLevel, res, r.Source, name, r.Namespace, m.String(), dr.GetHost())
		}
		for _, p := range dr.GetTrafficPolicy().GetPortLevelSettings() {
			tls := p.GetTls()
			if m := tls.GetMode(); (m == networking.ClientTLSSettings_SIMPLE || m == networking.ClientTLSSettings_MUTUAL) && !verifies(tls) {
				c.report(NoServerCertificateVerificationPortLevel, res, r.Source, name, r.Namespace, m.String(), dr.GetHost(), fmt.Sprintf("number:%d", p.GetPort().GetNumber()))
			}
		}
		if len(hosts) > 0 && dr.GetHost() != "" && !hostKnown(hosts, fqdn(dr.GetHost(), r.Namespace)) {
			c.report(UnknownDestinationRuleHost, res, r.Source, dr.GetHost())
		}
	}
}

// knownHosts returns the hostnames of the mesh's services: Services,
// zmesh.dev Workloads' services, ServiceEntry hosts (possibly wildcards).
func (c *context) knownHosts() []string {
	var out []string
	for _, s := range c.in.Services {
		out = append(out, s.Name+"."+s.Namespace+".svc.cluster.local")
	}
	for _, w := range c.workloads {
		for _, s := range w.Services {
			out = append(out, s+"."+w.Namespace+".svc.cluster.local")
		}
	}
	for _, s := range c.in.Registered {
		out = append(out, s.Hostname)
	}
	for _, r := range c.in.Snapshot.List(config.KindServiceEntry) {
		if se, ok := r.Spec.(*networking.ServiceEntry); ok {
			out = append(out, se.GetHosts()...)
		}
	}
	return out
}

// fqdn completes a host as Istio does (and zmesh's proxies, route.Host):
// a name without a dot, and not a wildcard, is a Kubernetes Service of ns;
// a host with a dot is taken as written, so "reviews.web" is not
// completed and "legacy.internal" stays a ServiceEntry's host.
func fqdn(host, ns string) string {
	if strings.HasPrefix(host, "*") || strings.Contains(host, ".") {
		return host
	}
	return host + "." + ns + ".svc.cluster.local"
}

// hostKnown reports whether host (maybe a *.wildcard) and a known host
// (maybe one too) can name the same service.
func hostKnown(known []string, host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, k := range known {
		k = strings.ToLower(strings.TrimSuffix(k, "."))
		if k == host || wildcardMatch(host, k) || wildcardMatch(k, host) {
			return true
		}
	}
	return false
}

// wildcardMatch reports whether pattern ("*.example.com", "*") matches h.
func wildcardMatch(pattern, h string) bool {
	if pattern == "*" {
		return true
	}
	suffix, ok := strings.CutPrefix(pattern, "*")
	return ok && strings.HasSuffix(h, suffix)
}
