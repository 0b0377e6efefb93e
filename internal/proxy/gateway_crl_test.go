package proxy

import (
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/meshtest"
	"github.com/zmesh/zmesh/internal/xds"
)

// TestGatewayRefusesRevokedClients: a MUTUAL server with caCertificates
// and caCrl files refuses a client its CRL lists and admits the others;
// the CRL file is read at each handshake, so a new revocation holds from
// the next connection; a CRL that does not parse refuses every client
// rather than admit them unchecked.
func TestGatewayRefusesRevokedClients(t *testing.T) {
	ca := meshtest.NewCA(t, testTD)
	web := meshtest.NewCA(t, "web.test")
	clients := meshtest.NewCRLIssuer(t, "clients", nil)
	chain, key := meshtest.PEM(t, web.IssueLeaf(t, "crl-server", "crl.example.com"))
	alice, aliceCert := clients.Leaf(t, "alice")
	bob, bobCert := clients.Leaf(t, "bob")
	dave, _ := clients.Leaf(t, "dave")
	dir := t.TempDir()
	later := time.Now().Add(time.Hour)
	writeFiles(t, dir, map[string][]byte{"tls.crt": chain, "tls.key": key,
		"ca.crt": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: clients.Cert.Raw}), "ca.crl": clients.CRL(t, later, bobCert)})
	gw := startGateway(t, ca, "ingressgateway", "", testLogger(t), func(c *Config) {
		c.Gateway.Ports = map[uint32]string{9471: "127.0.0.1:0"}
		c.Gateway.CertFileDirs = []string{dir}
	})
	rs := parse(t, fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: crl, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 9471, name: https, protocol: HTTPS}
    hosts: [crl.example.com]
    tls: {mode: MUTUAL, serverCertificate: %[1]s/tls.crt, privateKey: %[1]s/tls.key, caCertificates: %[1]s/ca.crt, caCrl: %[1]s/ca.crl}
`, dir))
	if err := config.Validate(rs[0]); err != nil {
		t.Fatal(err)
	}
	mustApply(t, gw, xds.Build(config.NewSnapshot("1", rs), nil, mesh(), xds.Proxy{ID: gw.reg.Key(), Workload: gw.reg, Gateway: true}))
	var addr net.Addr
	waitFor(t, func() bool { addr = gw.GatewayAddr(9471); return addr != nil })
	roots := &tls.Config{RootCAs: web.Pool()}
	if _, err := tlsHandshake(addr, "crl.example.com", roots, &alice); err != nil {
		t.Errorf("a client the CRL does not list: %v", err)
	}
	if _, err := tlsHandshake(addr, "crl.example.com", roots, &bob); err == nil {
		t.Error("a revoked client was admitted")
	}

	writeFiles(t, dir, map[string][]byte{"ca.crl": clients.CRL(t, later, bobCert, aliceCert)})
	if _, err := tlsHandshake(addr, "crl.example.com", roots, &alice); err == nil {
		t.Error("a client revoked by the rotated CRL was admitted")
	}

	if _, err := tlsHandshake(addr, "crl.example.com", roots, &dave); err != nil {
		t.Errorf("a client no CRL lists, after the rotation: %v", err)
	}
	writeFiles(t, dir, map[string][]byte{"ca.crl": []byte("not a CRL")})
	if _, err := tlsHandshake(addr, "crl.example.com", roots, &dave); err == nil {
		t.Error("with a malformed CRL, a client was admitted unchecked")
	}
}

// TestGatewayCredentialCRL: with credentialName the CRL is the
// credential's (Istio's ca.crl, or crl): a pushed Secret's and a
// credential directory's both refuse the clients they list, and a
// pushed CRL that does not parse refuses that server's clients.
func TestGatewayCredentialCRL(t *testing.T) {
	ca := meshtest.NewCA(t, testTD)
	web := meshtest.NewCA(t, "web.test")
	clients := meshtest.NewCRLIssuer(t, "clients", nil)
	chain, key := meshtest.PEM(t, web.IssueLeaf(t, "crl-server", "crl.example.com"))
	alice, _ := clients.Leaf(t, "alice")
	bob, bobCert := clients.Leaf(t, "bob")
	rootPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: clients.Cert.Raw})
	list := clients.CRL(t, time.Now().Add(time.Hour), bobCert)
	dir := t.TempDir()
	writeFiles(t, dir+"/dir-cred", map[string][]byte{"tls.crt": chain, "tls.key": key, "ca.crt": rootPEM, "ca.crl": list})
	gw := startGateway(t, ca, "ingressgateway", dir, testLogger(t), func(c *Config) {
		c.Gateway.Ports = map[uint32]string{9472: "127.0.0.1:0", 9473: "127.0.0.1:0"}
	})
	snap := config.NewSnapshot("1", parse(t, `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: crl, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 9472, name: https-pushed, protocol: HTTPS}
    hosts: [crl.example.com]
    tls: {mode: MUTUAL, credentialName: pushed-cred}
  - port: {number: 9473, name: https-dir, protocol: HTTPS}
    hosts: [crl.example.com]
    tls: {mode: MUTUAL, credentialName: dir-cred}
`))
	push := func(crlPEM []byte) {
		t.Helper()
		v := xds.Build(snap, nil, mesh(), xds.Proxy{ID: gw.reg.Key(), Workload: gw.reg, Gateway: true})
		v.Credentials = []xds.Credential{{Namespace: "istio-system", Name: "pushed-cred", Cert: chain, PrivateKey: key, CA: rootPEM, CRL: crlPEM}}
		v.Version += string(crlPEM)
		mustApply(t, gw, v)
	}
	push(list)
	var pushed, files net.Addr
	waitFor(t, func() bool {
		pushed, files = gw.GatewayAddr(9472), gw.GatewayAddr(9473)
		return pushed != nil && files != nil
	})
	roots := &tls.Config{RootCAs: web.Pool()}
	for name, addr := range map[string]net.Addr{"pushed Secret": pushed, "credential directory": files} {
		if _, err := tlsHandshake(addr, "crl.example.com", roots, &alice); err != nil {
			t.Errorf("%s: a client its CRL does not list: %v", name, err)
		}
		if _, err := tlsHandshake(addr, "crl.example.com", roots, &bob); err == nil {
			t.Errorf("%s: a revoked client was admitted", name)
		}
	}
	push([]byte("-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"))
	if _, err := tlsHandshake(pushed, "crl.example.com", roots, &alice); err == nil {
		t.Error("with a malformed pushed CRL, a client was admitted unchecked")
	}
}
