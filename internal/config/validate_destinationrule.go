package config

import (
	"fmt"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
)

// validateDestinationRule applies Istio's DestinationRule rules (those of
// istiod's validation webhook): a host, subsets named as DNS labels and
// unique, traffic policies that set something, ports in range, TLS
// settings whose mode has what it needs and nothing it would ignore, and
// an exportTo Istio can honour.
func validateDestinationRule(c *checker, in *networking.DestinationRule) {
	switch h := in.GetHost(); {
	case h == "":
		c.errorf("spec.host: host is required")
	case h == "*":
		// Istio accepts it: the rule applies to every host.
	default:
		if err := checkHost(h); err != nil {
			c.errorf("spec.host: %v", err)
		}
	}
	validateTrafficPolicy(c, "spec.trafficPolicy", in.GetTrafficPolicy())
	names := map[string]bool{}
	for i, s := range in.GetSubsets() {
		path := fmt.Sprintf("spec.subsets[%d]", i)
		switch n := s.GetName(); {
		case n == "":
			c.errorf("%s.name: subset name is required", path)
		case len(n) > 63 || !dns1123Label.MatchString(n):
			c.errorf("%s.name: subset name %q is invalid: must be a DNS label (lower case letters, digits and '-', at most 63)", path, n)
		case names[n]:
			c.errorf("%s.name: subset name %q is used twice", path, n)
		}
		names[s.GetName()] = true
		if len(s.GetLabels()) == 0 {
			c.warnf("%s: subset %q has no labels: it selects every endpoint of the host", path, s.GetName())
		}
		checkLabels(c, path+".labels", s.GetLabels(), true)
		validateTrafficPolicy(c, path+".trafficPolicy", s.GetTrafficPolicy())
	}
	checkExportTo(c, in.GetExportTo())
	if s := in.GetWorkloadSelector(); s != nil {
		checkSelector(c, "spec.workloadSelector", s)
	}
}

func validateTrafficPolicy(c *checker, path string, tp *networking.TrafficPolicy) {
	if tp == nil {
		return
	}
	if tp.GetLoadBalancer() == nil && tp.GetConnectionPool() == nil && tp.GetOutlierDetection() == nil &&
		tp.GetTls() == nil && len(tp.GetPortLevelSettings()) == 0 && tp.GetTunnel() == nil && tp.GetProxyProtocol() == nil && tp.GetRetryBudget() == nil {
		c.errorf("%s: traffic policy must have at least one field", path)
	}
	validateConnectionPool(c, path+".connectionPool", tp.GetConnectionPool())
	validateClientTLS(c, path+".tls", tp.GetTls())
	validateConsistentHash(c, path+".loadBalancer.consistentHash", tp.GetLoadBalancer().GetConsistentHash())
	var unapplied []string
	if tp.GetTunnel() != nil {
		unapplied = append(unapplied, "tunnel")
	}
	if tp.GetProxyProtocol() != nil {
		unapplied = append(unapplied, "proxyProtocol")
	}
	if tp.GetRetryBudget() != nil {
		unapplied = append(unapplied, "retryBudget")
	}
	warnUnapplied(c, path, append(unapplied, unappliedSettings(tp.GetLoadBalancer(), tp.GetConnectionPool())...))
	ports := map[uint32]bool{}
	for i, p := range tp.GetPortLevelSettings() {
		pp := fmt.Sprintf("%s.portLevelSettings[%d]", path, i)
		if p.GetPort() == nil {
			c.errorf("%s.port: port must be specified", pp)
		} else {
			n := p.GetPort().GetNumber()
			checkPort(c, pp+".port.number", n)
			if ports[n] {
				c.errorf("%s.port.number: port %d has settings twice", pp, n)
			}
			ports[n] = true
		}
		if p.GetLoadBalancer() == nil && p.GetConnectionPool() == nil && p.GetOutlierDetection() == nil && p.GetTls() == nil {
			c.errorf("%s: port traffic policy must have at least one field", pp)
		}
		validateConnectionPool(c, pp+".connectionPool", p.GetConnectionPool())
		validateClientTLS(c, pp+".tls", p.GetTls())
		warnUnapplied(c, pp, unappliedSettings(p.GetLoadBalancer(), p.GetConnectionPool()))
	}
}

// unappliedSettings names the load balancer and connection pool settings
// that are set and that zmesh's proxies accept, as Istio does, but do
// not apply.
func unappliedSettings(lb *networking.LoadBalancerSettings, cp *networking.ConnectionPoolSettings) []string {
	var out []string
	for _, f := range []struct {
		name string
		set  bool
	}{
		{"loadBalancer.localityLbSetting", lb.GetLocalityLbSetting() != nil},
		{"loadBalancer.warmupDurationSecs", lb.GetWarmupDurationSecs() != nil},
		{"loadBalancer.warmup", lb.GetWarmup() != nil},
		{"connectionPool.tcp.tcpKeepalive", cp.GetTcp().GetTcpKeepalive() != nil},
		{"connectionPool.tcp.maxConnectionDuration", cp.GetTcp().GetMaxConnectionDuration() != nil},
		{"connectionPool.tcp.idleTimeout", cp.GetTcp().GetIdleTimeout() != nil},
		{"connectionPool.http.idleTimeout", cp.GetHttp().GetIdleTimeout() != nil},
		{"connectionPool.http.maxRetries", cp.GetHttp().GetMaxRetries() != 0},
		{"connectionPool.http.maxConcurrentStreams", cp.GetHttp().GetMaxConcurrentStreams() != 0},
		{"connectionPool.http.useClientProtocol", cp.GetHttp().GetUseClientProtocol()},
	} {
		if f.set {
			out = append(out, f.name)
		}
	}
	return out
}

// warnUnapplied warns that settings at path are accepted but do nothing:
// a rule stays valid where Istio's is, and its author is not left to
// believe them in force.
func warnUnapplied(c *checker, path string, settings []string) {
	if len(settings) > 0 {
		c.warnf("%s: %s accepted but not applied by zmesh's proxies", path, strings.Join(settings, ", "))
	}
}

func validateConnectionPool(c *checker, path string, cp *networking.ConnectionPoolSettings) {
	if cp == nil {
		return
	}
	if cp.GetTcp() == nil && cp.GetHttp() == nil {
		c.errorf("%s: must have at least one field", path)
	}
	if t := cp.GetTcp(); t != nil && t.GetMaxConnections() < 0 {
		c.errorf("%s.tcp.maxConnections: must be 0 or more", path)
	}
	if h := cp.GetHttp(); h != nil {
		for name, v := range map[string]int32{
			"http1MaxPendingRequests":  h.GetHttp1MaxPendingRequests(),
			"http2MaxRequests":         h.GetHttp2MaxRequests(),
			"maxRequestsPerConnection": h.GetMaxRequestsPerConnection(),
			"maxRetries":               h.GetMaxRetries(),
			"maxConcurrentStreams":     h.GetMaxConcurrentStreams(),
		} {
			if v < 0 {
				c.errorf("%s.http.%s: must be 0 or more", path, name)
			}
		}
	}
}

// validateClientTLS is Istio's validateTLS, plus its ISTIO_MUTUAL rule:
// the mesh's certificates are the only ones ISTIO_MUTUAL uses, so a file
// named there would be silently ignored.
func validateClientTLS(c *checker, path string, s *networking.ClientTLSSettings) {
	if s == nil {
		return
	}
	mode := s.GetMode()
	files := s.GetClientCertificate() != "" || s.GetPrivateKey() != "" || s.GetCaCertificates() != "" || s.GetCaCrl() != ""
	if mode == networking.ClientTLSSettings_ISTIO_MUTUAL && (files || s.GetCredentialName() != "") {
		c.errorf("%s: cannot specify clientCertificate, privateKey, caCertificates, caCrl or credentialName when mode is ISTIO_MUTUAL", path)
	}
	if mode == networking.ClientTLSSettings_DISABLE && (files || s.GetCredentialName() != "" || s.GetSni() != "" || len(s.GetSubjectAltNames()) > 0) {
		c.warnf("%s: mode DISABLE ignores its certificate, SNI and subjectAltNames settings", path)
	}
	if s.GetInsecureSkipVerify().GetValue() {
		switch mode {
		case networking.ClientTLSSettings_SIMPLE:
			if s.GetCaCertificates() != "" || s.GetCredentialName() != "" || len(s.GetSubjectAltNames()) > 0 {
				c.errorf("%s: cannot specify caCertificates, credentialName or subjectAltNames when insecureSkipVerify is true", path)
			}
		case networking.ClientTLSSettings_MUTUAL:
			if s.GetCaCertificates() != "" || len(s.GetSubjectAltNames()) > 0 {
				c.errorf("%s: cannot specify caCertificates or subjectAltNames when insecureSkipVerify is true", path)
			}
		}
	}
	if (mode == networking.ClientTLSSettings_SIMPLE || mode == networking.ClientTLSSettings_MUTUAL) && s.GetCredentialName() != "" {
		if files {
			c.errorf("%s: cannot specify client certificates, CA certificate or CA CRL if credentialName is set", path)
		}
		return
	}
	if mode == networking.ClientTLSSettings_MUTUAL {
		if s.GetClientCertificate() == "" {
			c.errorf("%s.clientCertificate: client certificate required for mutual tls", path)
		}
		if s.GetPrivateKey() == "" {
			c.errorf("%s.privateKey: private key required for mutual tls", path)
		}
	}
	checkNotEmpty(c, path+".subjectAltNames", s.GetSubjectAltNames())
}

// validateConsistentHash requires the key Istio requires: a header, a
// cookie (with a name), a query parameter or the source address. A
// policy that names none would balance by nothing.
func validateConsistentHash(c *checker, path string, ch *networking.LoadBalancerSettings_ConsistentHashLB) {
	if ch == nil {
		return
	}
	keys := 0
	if ch.GetHttpHeaderName() != "" {
		keys++
	}
	if hc := ch.GetHttpCookie(); hc != nil {
		keys++
		validateHashCookie(c, path+".httpCookie", hc)
	}
	if ch.GetHttpQueryParameterName() != "" {
		keys++
	}
	if ch.GetUseSourceIp() {
		keys++
	}
	if keys != 1 {
		c.errorf("%s: exactly one of httpHeaderName, httpCookie, httpQueryParameterName and useSourceIp is required", path)
	}
}

// validateHashCookie checks what the proxy writes into the Set-Cookie
// header of a cookie it generates: a name that is an HTTP token, a path
// without ";" or control characters (either would add attributes the rule
// never set), a ttl that is not negative.
func validateHashCookie(c *checker, path string, hc *networking.LoadBalancerSettings_ConsistentHashLB_HTTPCookie) {
	switch name := hc.GetName(); {
	case name == "":
		c.errorf("%s.name: a cookie name is required", path)
	case strings.IndexFunc(name, func(r rune) bool { return !isTokenChar(r) }) >= 0:
		c.errorf("%s.name: %q is not a valid cookie name", path, name)
	}
	if strings.IndexFunc(hc.GetPath(), func(r rune) bool { return r == ';' || r < 0x21 || r > 0x7e }) >= 0 {
		c.errorf("%s.path: %q may not hold \";\", spaces or control characters", path, hc.GetPath())
	}
	if hc.GetTtl() != nil && (hc.GetTtl().AsDuration() < 0 || !hc.GetTtl().IsValid()) {
		c.errorf("%s.ttl: must not be negative", path)
	}
}

// isTokenChar reports whether r may appear in an HTTP token (RFC 9110).
func isTokenChar(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return true
	}
	return r < 0x80 && strings.ContainsRune("!#$%&'*+-.^_`|~", r)
}
