package analyze

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/zmesh/zmesh/internal/config"
)

// analyzeDestinationRules checks DestinationRules, which zmesh does not
// apply but reads for Istio's checks: TLS to a destination without CA
// certificates, at the destination (IST0128) or a port (IST0129), a host
// no service matches (IST0174, when services are known), and fields the
// schema deprecates (IST0002). A spec that does not decode is IST0106.
func analyzeDestinationRules(c *context) {
	hosts := c.knownHosts()
	for _, o := range c.in.Others {
		if o.Kind != "DestinationRule" || !strings.HasPrefix(o.APIVersion, "networking.istio.io/") {
			continue
		}
		res := resourceName(o.Kind, o.Namespace, o.Name)
		dr := &networking.DestinationRule{}
		if len(o.Spec) > 0 {
			if err := protojson.Unmarshal(o.Spec, dr); err != nil {
				c.report(SchemaValidationError, res, o.Source, fmt.Errorf("spec: %s", strings.TrimPrefix(err.Error(), "proto: ")))
				continue
			}
		}
		name := o.Namespace + "/" + o.Name
		verifies := func(tls *networking.ClientTLSSettings) bool {
			return tls.GetCaCertificates() != "" || (tls.GetCredentialName() != "" && dr.GetWorkloadSelector() != nil)
		}
		tls := dr.GetTrafficPolicy().GetTls()
		if m := tls.GetMode(); (m == networking.ClientTLSSettings_SIMPLE || m == networking.ClientTLSSettings_MUTUAL) && !verifies(tls) {
			c.report(NoServerCertificateVerificationDestinationLevel, res, o.Source, name, o.Namespace, m.String(), dr.GetHost())
		}
		for _, p := range dr.GetTrafficPolicy().GetPortLevelSettings() {
			tls := p.GetTls()
			if m := tls.GetMode(); (m == networking.ClientTLSSettings_SIMPLE || m == networking.ClientTLSSettings_MUTUAL) && !verifies(tls) {
				c.report(NoServerCertificateVerificationPortLevel, res, o.Source, name, o.Namespace, m.String(), dr.GetHost(), fmt.Sprintf("number:%d", p.GetPort().GetNumber()))
			}
		}
		if len(hosts) > 0 && dr.GetHost() != "" && !hostKnown(hosts, fqdn(dr.GetHost(), o.Namespace)) {
			c.report(UnknownDestinationRuleHost, res, o.Source, dr.GetHost())
		}
		for _, f := range deprecatedFields(dr) {
			c.report(Deprecated, res, o.Source, f+" is deprecated")
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

// fqdn resolves a short host name in namespace ns, as Istio does for a
// DestinationRule's host: "name" and "name.ns" are Kubernetes services.
func fqdn(host, ns string) string {
	switch strings.Count(host, ".") {
	case 0:
		if host == "*" {
			return host
		}
		return host + "." + ns + ".svc.cluster.local"
	case 1:
		return host + ".svc.cluster.local"
	}
	return host
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
