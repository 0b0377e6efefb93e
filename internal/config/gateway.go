package config

import (
	"fmt"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
)

// KindGateway is Istio's Gateway (networking.istio.io v1, v1beta1,
// v1alpha3): the ports a gateway proxy (`zmesh proxy --gateway`) whose
// labels its selector matches listens on, and the hosts it admits there.
// VirtualServices bind to it by name to route what it admits.
const KindGateway Kind = "Gateway"

// gatewayProtocols are the server protocols zmesh serves. Istio also
// names MONGO and GRPC-WEB; zmesh refuses them rather than serve them as
// something else.
var gatewayProtocols = map[string]bool{"HTTP": true, "HTTPS": true, "HTTP2": true, "GRPC": true, "TCP": true, "TLS": true}

// IsHTTPProtocol reports whether a gateway server of protocol proto
// (any case) carries HTTP requests once TLS, if any, is terminated.
func IsHTTPProtocol(proto string) bool {
	switch strings.ToUpper(proto) {
	case "HTTP", "HTTPS", "HTTP2", "GRPC":
		return true
	}
	return false
}

// GatewayRef resolves a name in a VirtualService's gateways (or in an
// HTTP match's) to NAMESPACE/NAME: a bare name is in the VirtualService's
// namespace ns, as Istio reads it. "mesh" stays "mesh".
func GatewayRef(name, ns string) string {
	if name == GatewayMesh || strings.Contains(name, "/") {
		return name
	}
	return ns + "/" + name
}

// BindsGateway reports whether the VirtualService vs of namespace ns is
// bound to the gateway gw (NAMESPACE/NAME). A VirtualService without
// gateways binds to "mesh" only, never to a gateway.
func BindsGateway(vs *networking.VirtualService, ns, gw string) bool {
	for _, g := range vs.GetGateways() {
		if GatewayRef(g, ns) == gw {
			return true
		}
	}
	return false
}

// SplitServerHost splits a Gateway server host "namespace/dnsName" into
// its parts; a host without a namespace is in any ("*").
func SplitServerHost(h string) (ns, name string) {
	if ns, name, ok := strings.Cut(h, "/"); ok {
		return ns, name
	}
	return "*", h
}

// validateGateway applies Istio's Gateway rules (a server needs a port
// with a known protocol and at least one host; port names are unique;
// TLS settings fit the protocol) and refuses what zmesh does not
// implement (bind addresses, tlsCertificates, certificate pinning,
// AUTO_PASSTHROUGH) rather than
// serve a port less strictly than its author wrote.
func validateGateway(c *checker, in *networking.Gateway) {
	checkLabels(c, "spec.selector", in.GetSelector(), true)
	if len(in.GetServers()) == 0 {
		c.errorf("spec.servers: at least one server is required")
	}
	names := map[string]bool{}
	for i, s := range in.GetServers() {
		path := fmt.Sprintf("spec.servers[%d]", i)
		if s == nil {
			c.errorf("%s: empty server", path)
			continue
		}
		if n := s.GetName(); n != "" {
			if names[n] {
				c.errorf("%s.name: %q is used by another server", path, n)
			}
			names[n] = true
		}
		validateGatewayServer(c, path, s)
	}
}

func validateGatewayServer(c *checker, path string, s *networking.Server) {
	p := s.GetPort()
	proto := ""
	if p == nil {
		c.errorf("%s.port: required", path)
	} else {
		checkPort(c, path+".port.number", p.GetNumber())
		proto = strings.ToUpper(p.GetProtocol())
		if !gatewayProtocols[proto] {
			c.errorf("%s.port.protocol: %q is not one of HTTP, HTTPS, GRPC, HTTP2, TCP, TLS", path, p.GetProtocol())
		}
		if p.GetName() == "" {
			c.errorf("%s.port.name: required", path)
		}
		if p.GetTargetPort() != 0 {
			c.errorf("%s.port.targetPort: not supported on a Gateway", path)
		}
	}
	if s.GetBind() != "" || s.GetDefaultEndpoint() != "" {
		c.errorf("%s: bind and defaultEndpoint are not supported by zmesh (the gateway proxy's flags say where it listens)", path)
	}
	if len(s.GetHosts()) == 0 {
		c.errorf("%s.hosts: at least one host is required", path)
	}
	for i, h := range s.GetHosts() {
		if err := CheckServerHost(h); err != nil {
			c.errorf("%s.hosts[%d]: %v", path, i, err)
		}
	}
	t := s.GetTls()
	switch proto {
	case "HTTPS", "TLS":
		if t == nil {
			c.errorf("%s.tls: required for protocol %s", path, proto)
			return
		}
	case "HTTP":
		// Istio's only TLS setting on a plain port is httpsRedirect (mode
		// defaults to PASSTHROUGH there and means nothing).
		if t != nil && (t.GetMode() != networking.ServerTLSSettings_PASSTHROUGH || t.GetCredentialName() != "" || !t.GetHttpsRedirect()) {
			c.errorf("%s.tls: a plain HTTP server takes only httpsRedirect", path)
		}
		return
	}
	if t == nil {
		return
	}
	tp := path + ".tls"
	files := t.GetServerCertificate() != "" || t.GetPrivateKey() != "" || t.GetCaCertificates() != ""
	if len(t.GetTlsCertificates()) > 0 {
		c.errorf("%s.tlsCertificates: not supported by zmesh; use credentialNames, or serverCertificate and privateKey", tp)
	}
	if crl := t.GetCaCrl(); crl != "" {
		// Istio's rules: a CRL checks client certificates, and with a
		// credential it is the credential's (ca.crl, crl).
		switch {
		case t.GetCredentialName() != "" || len(t.GetCredentialNames()) > 0:
			c.errorf("%s.caCrl: not supported with credentialName; the CRL has to be in the credential (ca.crl or crl)", tp)
		case t.GetMode() != networking.ServerTLSSettings_MUTUAL && t.GetMode() != networking.ServerTLSSettings_OPTIONAL_MUTUAL:
			c.errorf("%s.caCrl: requires mode MUTUAL or OPTIONAL_MUTUAL", tp)
		default:
			if err := CheckServerFilePath(crl); err != nil {
				c.errorf("%s.caCrl: %v", tp, err)
			}
		}
	}
	if len(t.GetVerifyCertificateSpki()) > 0 || len(t.GetVerifyCertificateHash()) > 0 || len(t.GetCipherSuites()) > 0 || t.GetInsecureSkipVerify() != nil {
		c.errorf("%s: verifyCertificateSpki, verifyCertificateHash, cipherSuites and insecureSkipVerify are not supported by zmesh", tp)
	}
	if t.GetMinProtocolVersion() != networking.ServerTLSSettings_TLS_AUTO || t.GetMaxProtocolVersion() != networking.ServerTLSSettings_TLS_AUTO {
		c.errorf("%s: minProtocolVersion and maxProtocolVersion are not supported by zmesh (TLS 1.2 and later)", tp)
	}
	switch t.GetMode() {
	case networking.ServerTLSSettings_SIMPLE, networking.ServerTLSSettings_MUTUAL, networking.ServerTLSSettings_OPTIONAL_MUTUAL:
		mutual := t.GetMode() != networking.ServerTLSSettings_SIMPLE
		switch names := t.GetCredentialNames(); {
		case t.GetCredentialName() != "" && len(names) > 0:
			c.errorf("%s: only one of credentialName or credentialNames can be set", tp)
		case (t.GetCredentialName() != "" || len(names) > 0) && files:
			// Istio's "only one of" rule; caCertificates beside a
			// credential would be silently ignored by Istio, refused here.
			c.errorf("%s: only one of credentialName(s) or serverCertificate, privateKey and caCertificates (files) can be set", tp)
		case files:
			validateServerFiles(c, tp, t, mutual)
		case t.GetCredentialName() == "" && len(names) == 0:
			c.errorf("%s.credentialName: required for mode %s (or serverCertificate and privateKey)", tp, t.GetMode())
		case len(names) > 2:
			c.errorf("%s.credentialNames: at most 2 (an RSA and an ECDSA certificate)", tp)
		}
		for _, n := range ServerCredentialNames(t) {
			if err := checkCredentialName(n); err != nil {
				c.errorf("%s.credentialName: %v", tp, err)
			}
		}
		if len(t.GetSubjectAltNames()) > 0 && !mutual {
			c.errorf("%s.subjectAltNames: requires mode MUTUAL or OPTIONAL_MUTUAL", tp)
		}
		if n := t.GetCaCertCredentialName(); n != "" {
			switch {
			case !mutual:
				c.errorf("%s.caCertCredentialName: requires mode MUTUAL or OPTIONAL_MUTUAL", tp)
			case files:
				c.errorf("%s.caCertCredentialName: with certificate files the clients' CA is caCertificates", tp)
			default:
				if err := checkCredentialName(n); err != nil {
					c.errorf("%s.caCertCredentialName: %v", tp, err)
				}
			}
		}
	case networking.ServerTLSSettings_ISTIO_MUTUAL:
		if files || len(ServerCredentialNames(t)) > 0 || t.GetCaCertCredentialName() != "" || len(t.GetSubjectAltNames()) > 0 {
			c.errorf("%s: mode ISTIO_MUTUAL takes the mesh's certificates: no credentialName(s), caCertCredentialName, certificate files or subjectAltNames", tp)
		}
	case networking.ServerTLSSettings_PASSTHROUGH:
		if proto != "TLS" {
			c.errorf("%s.mode: PASSTHROUGH needs protocol TLS", tp)
		}
		if files || len(ServerCredentialNames(t)) > 0 || t.GetCaCertCredentialName() != "" {
			c.errorf("%s: PASSTHROUGH terminates no TLS: no credentialName or certificate files", tp)
		}
	default:
		c.errorf("%s.mode: %s is not supported by zmesh", tp, t.GetMode())
	}
	if proto == "HTTPS" && t.GetMode() == networking.ServerTLSSettings_PASSTHROUGH {
		c.errorf("%s.mode: PASSTHROUGH needs protocol TLS", tp)
	}
}

// validateServerFiles applies Istio's rules for a server whose
// certificate is files on the gateway's disk (serverCertificate and
// privateKey; caCertificates for MUTUAL and OPTIONAL_MUTUAL), and
// requires each path to be absolute: the gateway serves files only from
// the directories its operator declared (proxy.GatewayConfig.CertFileDirs),
// and a relative path would depend on the gateway's working directory.
func validateServerFiles(c *checker, tp string, t *networking.ServerTLSSettings, mutual bool) {
	prefix := "SIMPLE TLS"
	if mutual {
		prefix = "MUTUAL TLS"
	}
	for _, f := range []struct{ field, path, need string }{
		{"serverCertificate", t.GetServerCertificate(), "a server certificate"},
		{"privateKey", t.GetPrivateKey(), "a private key"},
		{"caCertificates", t.GetCaCertificates(), "a client CA bundle"},
	} {
		if f.path == "" {
			if f.field != "caCertificates" || mutual {
				c.errorf("%s.%s: %s requires %s", tp, f.field, prefix, f.need)
			}
			continue
		}
		if err := CheckServerFilePath(f.path); err != nil {
			c.errorf("%s.%s: %v", tp, f.field, err)
		}
	}
}

// maxFilePath bounds a certificate file's path (Linux's PATH_MAX).
const maxFilePath = 4096

// CheckServerFilePath checks a Gateway server's certificate, key, CA or
// CRL file path: absolute, slash-separated, at most 4096 bytes, no NUL.
// Where it may point is the gateway's decision (its declared
// directories), not the Gateway's.
func CheckServerFilePath(p string) error {
	if !strings.HasPrefix(p, "/") || len(p) > maxFilePath || strings.ContainsRune(p, 0) {
		return fmt.Errorf("%q is not an absolute file path", p)
	}
	return nil
}

// CheckServerHost checks one Gateway server host, "[namespace/]dnsName":
// namespace "*", "." or a name; dnsName "*", "*.suffix" or a name.
func CheckServerHost(h string) error {
	ns, name := SplitServerHost(h)
	return checkNamespacedHost(h, ns, name, "*", ".")
}

// ServerCredentialNames returns the Secrets a server presents its
// certificates from: its credentialName, or its credentialNames (an RSA
// and an ECDSA certificate for one server).
func ServerCredentialNames(t *networking.ServerTLSSettings) []string {
	if n := t.GetCredentialName(); n != "" {
		return []string{n}
	}
	return t.GetCredentialNames()
}

// checkCredentialName requires a credential name that is one path element,
// since it names a directory under the gateway's credential directory.
func checkCredentialName(n string) error {
	if n == "." || n == ".." || strings.ContainsAny(n, `/\`) || strings.ContainsRune(n, 0) || len(n) > 253 {
		return fmt.Errorf("%q is not a Secret name", n)
	}
	return nil
}

// CheckGatewayRef checks a gateway name as a VirtualService gives it:
// "mesh", NAME, or NAMESPACE/NAME.
func CheckGatewayRef(g string) error {
	if g == GatewayMesh {
		return nil
	}
	ns, name, qualified := strings.Cut(g, "/")
	if !qualified {
		ns, name = "", g
	}
	if qualified {
		if err := checkNamespace(ns); err != nil {
			return fmt.Errorf("gateway %q: %v", g, err)
		}
	}
	if name == "" || len(name) > 253 || !dns1123Subdomain.MatchString(name) {
		return fmt.Errorf("gateway %q is not mesh, NAME or NAMESPACE/NAME", g)
	}
	return nil
}

// HostsIntersect reports whether two host patterns ("*", "*.suffix" or a
// name, lower case) can name one host: how a Gateway server's hosts meet
// a VirtualService's, a request's Host, or another server's.
func HostsIntersect(a, b string) bool {
	if a == "*" || b == "*" {
		return true
	}
	aw, bw := strings.HasPrefix(a, "*"), strings.HasPrefix(b, "*")
	switch {
	case !aw && !bw:
		return a == b
	case aw && !bw:
		return strings.HasSuffix(b, a[1:]) && len(b) > len(a)-1
	case !aw && bw:
		return strings.HasSuffix(a, b[1:]) && len(a) > len(b)-1
	default:
		return strings.HasSuffix(a[1:], b[1:]) || strings.HasSuffix(b[1:], a[1:])
	}
}

// ServerHostAdmits reports whether the server host h ("ns/dnsName") of a
// Gateway in namespace gwNS lets a VirtualService of namespace vsNS bind
// its host: the namespace part is "*", "." (the Gateway's) or vsNS.
func ServerHostAdmits(h, gwNS, vsNS string) bool {
	ns, _ := SplitServerHost(h)
	return ns == "*" || ns == vsNS || ns == "." && vsNS == gwNS
}
