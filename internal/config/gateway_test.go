package config

import (
	"os"
	"testing"

	networking "istio.io/api/networking/v1alpha3"
)

func TestValidateGateway(t *testing.T) {
	const plain = "servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]"
	runValidateCases(t, "networking.istio.io/v1", KindGateway, []validateCase{
		{name: "plain http", spec: "selector: {istio: ingressgateway}\n" + plain},
		{name: "no selector", spec: plain},
		{name: "no servers", spec: "selector: {istio: ingressgateway}", wantErr: "at least one server"},
		{name: "no port", spec: "servers: [{hosts: ['*']}]", wantErr: "port: required"},
		{name: "port out of range", spec: "servers: [{port: {number: 70000, name: http, protocol: HTTP}, hosts: ['*']}]", wantErr: "out of range"},
		{name: "unknown protocol", spec: "servers: [{port: {number: 80, name: m, protocol: MONGO}, hosts: ['*']}]", wantErr: "MONGO"},
		{name: "lower case protocol", spec: "servers: [{port: {number: 80, name: h, protocol: http}, hosts: ['*']}]"},
		{name: "no port name", spec: "servers: [{port: {number: 80, protocol: HTTP}, hosts: ['*']}]", wantErr: "port.name: required"},
		{name: "no hosts", spec: "servers: [{port: {number: 80, name: http, protocol: HTTP}}]", wantErr: "at least one host"},
		{name: "namespaced hosts", spec: "servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['./a.example.com', '*/b.example.com', 'prod/*', 'prod/*.example.com']}]"},
		{name: "bad host namespace", spec: "servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['Prod_1/a.example.com']}]", wantErr: "not a valid namespace"},
		{name: "bad host name", spec: "servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['a b']}]", wantErr: "hosts[0]"},
		{name: "server names unique", spec: "servers: [{name: s, port: {number: 80, name: a, protocol: HTTP}, hosts: ['*']}, {name: s, port: {number: 81, name: b, protocol: HTTP}, hosts: ['*']}]", wantErr: "used by another server"},
		{name: "https redirect", spec: "servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*'], tls: {httpsRedirect: true}}]"},
		{name: "tls mode on plain http", spec: "servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*'], tls: {mode: SIMPLE, credentialName: c}}]", wantErr: "only httpsRedirect"},
		{name: "https without tls", spec: "servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: ['*']}]", wantErr: "tls: required"},
		{name: "simple", spec: "servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: ['*'], tls: {mode: SIMPLE, credentialName: my-cred}}]"},
		{name: "simple without credential", spec: "servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: ['*'], tls: {mode: SIMPLE}}]", wantErr: "credentialName: required"},
		{name: "credential that leaves the directory", spec: "servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: ['*'], tls: {mode: SIMPLE, credentialName: ../etc}}]", wantErr: "not a Secret name"},
		{name: "simple with certificate files", spec: "servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: ['*'], tls: {mode: SIMPLE, serverCertificate: /etc/istio/ingressgateway-certs/tls.crt, privateKey: /etc/istio/ingressgateway-certs/tls.key}}]"},
		{name: "simple with a certificate and no key", spec: "servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: ['*'], tls: {mode: SIMPLE, serverCertificate: /c}}]", wantErr: "SIMPLE TLS requires a private key"},
		{name: "simple with a key and no certificate", spec: "servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: ['*'], tls: {mode: SIMPLE, privateKey: /k}}]", wantErr: "SIMPLE TLS requires a server certificate"},
		{name: "mutual with certificate files and a CA", spec: "servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: ['*'], tls: {mode: MUTUAL, serverCertificate: /c, privateKey: /k, caCertificates: /ca}}]"},
		{name: "mutual with certificate files, no CA", spec: "servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: ['*'], tls: {mode: MUTUAL, serverCertificate: /c, privateKey: /k}}]", wantErr: "MUTUAL TLS requires a client CA bundle"},
		{name: "optional mutual with certificate files, no CA", spec: "servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: ['*'], tls: {mode: OPTIONAL_MUTUAL, serverCertificate: /c, privateKey: /k}}]", wantErr: "MUTUAL TLS requires a client CA bundle"},
		{name: "simple takes caCertificates as Istio does", spec: "servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: ['*'], tls: {mode: SIMPLE, serverCertificate: /c, privateKey: /k, caCertificates: /ca}}]"},
		{name: "relative certificate path", spec: "servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: ['*'], tls: {mode: SIMPLE, serverCertificate: tls.crt, privateKey: /k}}]", wantErr: "not an absolute file path"},
		{name: "relative CA path", spec: "servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: ['*'], tls: {mode: MUTUAL, serverCertificate: /c, privateKey: /k, caCertificates: ./ca.crt}}]", wantErr: "caCertificates: \"./ca.crt\" is not an absolute"},
		{name: "credentialName and certificate files", spec: "servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: ['*'], tls: {mode: SIMPLE, credentialName: c, serverCertificate: /c, privateKey: /k}}]", wantErr: "only one of credentialName(s) or serverCertificate"},
		{name: "credentialName and caCertificates", spec: "servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: ['*'], tls: {mode: MUTUAL, credentialName: c, caCertificates: /ca}}]", wantErr: "only one of credentialName(s) or serverCertificate"},
		{name: "credentialNames and certificate files", spec: "servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: ['*'], tls: {mode: SIMPLE, credentialNames: [a], serverCertificate: /c, privateKey: /k}}]", wantErr: "only one of credentialName(s) or serverCertificate"},
		{name: "caCertCredentialName with certificate files", spec: "servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: ['*'], tls: {mode: MUTUAL, serverCertificate: /c, privateKey: /k, caCertificates: /ca, caCertCredentialName: x}}]", wantErr: "with certificate files the clients' CA is caCertificates"},
		{name: "istio mutual with certificate files", spec: "servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: ['*'], tls: {mode: ISTIO_MUTUAL, serverCertificate: /c, privateKey: /k}}]", wantErr: "takes the mesh's certificates"},
		{name: "mutual with a CRL file", spec: "servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: ['*'], tls: {mode: MUTUAL, serverCertificate: /c, privateKey: /k, caCertificates: /ca, caCrl: /ca.crl}}]"},
		{name: "optional mutual with a CRL file", spec: "servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: ['*'], tls: {mode: OPTIONAL_MUTUAL, serverCertificate: /c, privateKey: /k, caCertificates: /ca, caCrl: /ca.crl}}]"},
		{name: "CRL with SIMPLE", spec: "servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: ['*'], tls: {mode: SIMPLE, serverCertificate: /c, privateKey: /k, caCrl: /ca.crl}}]", wantErr: "caCrl: requires mode MUTUAL"},
		{name: "CRL with credentialName", spec: "servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: ['*'], tls: {mode: MUTUAL, credentialName: c, caCrl: /ca.crl}}]", wantErr: "the CRL has to be in the credential"},
		{name: "relative CRL path", spec: "servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: ['*'], tls: {mode: MUTUAL, serverCertificate: /c, privateKey: /k, caCertificates: /ca, caCrl: ca.crl}}]", wantErr: "caCrl: \"ca.crl\" is not an absolute"},
		{name: "tlsCertificates refused", spec: "servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: ['*'], tls: {mode: SIMPLE, tlsCertificates: [{serverCertificate: /c, privateKey: /k}]}}]", wantErr: "tlsCertificates: not supported"},
		{name: "mutual with SANs", spec: "servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: ['*'], tls: {mode: MUTUAL, credentialName: c, subjectAltNames: [client]}}]"},
		{name: "simple with SANs", spec: "servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: ['*'], tls: {mode: SIMPLE, credentialName: c, subjectAltNames: [client]}}]", wantErr: "requires mode MUTUAL"},
		{name: "istio mutual", spec: "servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: ['*'], tls: {mode: ISTIO_MUTUAL}}]"},
		{name: "istio mutual with credential", spec: "servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: ['*'], tls: {mode: ISTIO_MUTUAL, credentialName: c}}]", wantErr: "takes the mesh's certificates"},
		{name: "passthrough", spec: "servers: [{port: {number: 443, name: tls, protocol: TLS}, hosts: ['*.example.com'], tls: {mode: PASSTHROUGH}}]"},
		{name: "passthrough with certificate files", spec: "servers: [{port: {number: 443, name: tls, protocol: TLS}, hosts: ['*'], tls: {mode: PASSTHROUGH, serverCertificate: /c, privateKey: /k}}]", wantErr: "terminates no TLS"},
		{name: "passthrough on https", spec: "servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: ['*'], tls: {mode: PASSTHROUGH}}]", wantErr: "PASSTHROUGH needs protocol TLS"},
		{name: "credentialNames, RSA and ECDSA", spec: "servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: ['*'], tls: {mode: SIMPLE, credentialNames: [rsa, ecdsa]}}]"},
		{name: "credentialName and credentialNames", spec: "servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: ['*'], tls: {mode: SIMPLE, credentialName: a, credentialNames: [b]}}]", wantErr: "only one of"},
		{name: "three credentialNames", spec: "servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: ['*'], tls: {mode: SIMPLE, credentialNames: [a, b, c]}}]", wantErr: "at most 2"},
		{name: "caCertCredentialName", spec: "servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: ['*'], tls: {mode: MUTUAL, credentialName: a, caCertCredentialName: clients}}]"},
		{name: "caCertCredentialName with SIMPLE", spec: "servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: ['*'], tls: {mode: SIMPLE, credentialName: a, caCertCredentialName: clients}}]", wantErr: "requires mode MUTUAL"},
		{name: "a credentialNames entry that is no Secret name", spec: "servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: ['*'], tls: {mode: SIMPLE, credentialNames: [../x]}}]", wantErr: "not a Secret name"},
		{name: "optional mutual", spec: "servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: ['*'], tls: {mode: OPTIONAL_MUTUAL, credentialName: c, subjectAltNames: [client]}}]"},
		{name: "optional mutual needs a credential", spec: "servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: ['*'], tls: {mode: OPTIONAL_MUTUAL}}]", wantErr: "credentialName: required"},
		{name: "auto passthrough refused", spec: "servers: [{port: {number: 443, name: tls, protocol: TLS}, hosts: ['*'], tls: {mode: AUTO_PASSTHROUGH}}]", wantErr: "not supported"},
		{name: "bind refused", spec: "servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*'], bind: 127.0.0.1}]", wantErr: "bind"},
		{name: "selector wildcard", spec: "selector: {istio: '*'}\n" + plain, wantErr: "wildcard"},
		{name: "tcp", spec: "servers: [{port: {number: 3306, name: tcp, protocol: TCP}, hosts: ['*']}]"},
	})
}

// TestGatewayUnknownField checks that a misspelt field is refused, as
// for every other kind, rather than dropped.
func TestGatewayUnknownField(t *testing.T) {
	doc := "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: g}\nspec: {servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*'], tsl: {}}]}\n"
	if _, _, err := Parse([]byte(doc), "t.yaml"); err == nil {
		t.Fatal("Parse accepted an unknown field")
	}
}

func TestGatewayTestdata(t *testing.T) {
	data, err := os.ReadFile("testdata/gateway.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rs, warnings, err := Parse(data, "gateway.yaml")
	if err != nil || len(warnings) > 0 {
		t.Fatalf("Parse: %v %v", warnings, err)
	}
	kinds := map[Kind]int{}
	for _, r := range rs {
		kinds[r.Kind]++
		if err := Validate(r); err != nil {
			t.Errorf("%s: %v", r.Key(), err)
		}
	}
	if kinds[KindGateway] != 2 || kinds[KindVirtualService] != 1 {
		t.Fatalf("kinds = %v", kinds)
	}
}

func TestBindsGateway(t *testing.T) {
	tests := []struct {
		name     string
		gateways []string
		gw       string
		want     bool
	}{
		{"no gateways binds mesh only", nil, "default/gw", false},
		{"bare name is in the VirtualService's namespace", []string{"gw"}, "default/gw", true},
		{"bare name is not another namespace's", []string{"gw"}, "istio-system/gw", false},
		{"qualified name", []string{"istio-system/gw"}, "istio-system/gw", true},
		{"mesh is not a gateway", []string{"mesh"}, "default/mesh", false},
		{"one of several", []string{"mesh", "istio-system/egress"}, "istio-system/egress", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vs := &networking.VirtualService{Gateways: tt.gateways}
			if got := BindsGateway(vs, "default", tt.gw); got != tt.want {
				t.Errorf("BindsGateway = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestVirtualServiceGatewayNames(t *testing.T) {
	runValidateCases(t, "networking.istio.io/v1", KindVirtualService, []validateCase{
		{name: "gateway and mesh", spec: "hosts: [a.example.com]\ngateways: [mesh, istio-system/egress]\nhttp: [{route: [{destination: {host: a.example.com}}]}]"},
		{name: "star host on a gateway", spec: "hosts: ['*']\ngateways: [ingress]\nhttp: [{route: [{destination: {host: a}}]}]"},
		{name: "bad gateway name", spec: "hosts: [a.example.com]\ngateways: ['a/b/c']\nhttp: [{route: [{destination: {host: a}}]}]", wantErr: "gateways[0]"},
		{name: "bad match gateway name", spec: "hosts: [a.example.com]\ngateways: [g]\nhttp: [{match: [{gateways: ['Bad Name']}], route: [{destination: {host: a}}]}]", wantErr: "gateways[0]"},
	})
}

func TestHostsIntersect(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"*", "a.example.com", true},
		{"a.example.com", "a.example.com", true},
		{"a.example.com", "b.example.com", false},
		{"*.example.com", "a.example.com", true},
		{"*.example.com", "example.com", false},
		{"a.example.com", "*.example.com", true},
		{"*.example.com", "*.a.example.com", true},
		{"*.example.com", "*.example.org", false},
		{"*.example.com", "xexample.com", false},
	}
	for _, tt := range tests {
		if got := HostsIntersect(tt.a, tt.b); got != tt.want {
			t.Errorf("HostsIntersect(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}
