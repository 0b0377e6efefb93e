package proxy

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"github.com/zmesh/zmesh/internal/registry"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/meshtest"
	"github.com/zmesh/zmesh/internal/xds"
)

const credentialGateways = `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: web, namespace: apps}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 9443, name: https, protocol: HTTPS}
    hosts: [web.example.com]
    tls: {mode: SIMPLE, credentialName: web-cert}
  - port: {number: 9444, name: https-mtls, protocol: HTTPS}
    hosts: [mtls.example.com]
    tls: {mode: MUTUAL, credentialName: mtls-cert}
  - port: {number: 9446, name: https-optional, protocol: HTTPS}
    hosts: [mtls.example.com]
    tls: {mode: OPTIONAL_MUTUAL, credentialName: mtls-cert}
`

// TestGatewayServesPushedCredentials: a gateway serves the credentials
// its view carries (the control plane's Secrets), per server: SIMPLE
// with its key pair, MUTUAL requiring a client certificate of the CA of
// NAME-cacert. A malformed credential fails only its server's
// handshakes; a credential of another namespace is never served; a new
// push rotates what is served. /debug/config says where each comes from.
func TestGatewayServesPushedCredentials(t *testing.T) {
	ca := meshtest.NewCA(t, testTD)
	web := meshtest.NewCA(t, "web.test")
	clients := meshtest.NewCA(t, "clients.test")
	chain1, key1 := meshtest.PEM(t, web.IssueLeaf(t, "web-1", "web.example.com"))
	chain2, key2 := meshtest.PEM(t, web.IssueLeaf(t, "web-2", "web.example.com"))
	mchain, mkey := meshtest.PEM(t, web.IssueLeaf(t, "mtls", "mtls.example.com"))
	gw := startGateway(t, ca, "ingressgateway", "", testLogger(t), func(c *Config) {
		c.Gateway.Ports = map[uint32]string{9443: "127.0.0.1:0", 9444: "127.0.0.1:0", 9446: "127.0.0.1:0"}
	})
	version := 0
	push := func(creds ...xds.Credential) {
		t.Helper()
		version++
		snap := config.NewSnapshot(fmt.Sprint(version), parse(t, credentialGateways))
		v := xds.Build(snap, nil, mesh(), xds.Proxy{ID: gw.reg.Key(), Workload: gw.reg, Gateway: true})
		v.Credentials = creds
		v.Version = fmt.Sprintf("%s-%d", v.Version, version)
		mustApply(t, gw, v)
	}
	own := func(name string, chain, key, caPEM []byte) xds.Credential {
		return xds.Credential{Namespace: "istio-system", Name: name, Cert: chain, PrivateKey: key, CA: caPEM}
	}
	push(own("web-cert", chain1, key1, nil), own("mtls-cert", mchain, mkey, nil), own("mtls-cert-cacert", nil, nil, clients.RootPEM()))
	var webAddr, mtlsAddr net.Addr
	waitFor(t, func() bool {
		webAddr, mtlsAddr = gw.GatewayAddr(9443), gw.GatewayAddr(9444)
		return webAddr != nil && mtlsAddr != nil
	})

	served := func(addr net.Addr, sni string, cert *tls.Certificate) (string, error) {
		cfg := &tls.Config{ServerName: sni, RootCAs: web.Pool()}
		if cert != nil {
			// Presented whatever CAs the server names as acceptable (a
			// client given Certificates sends none that no acceptable CA
			// issued, which would test nothing).
			cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
		}
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr.String(), cfg)
		if err != nil {
			return "", err
		}
		defer c.Close()
		// A TLS 1.3 server refuses a client certificate after the
		// client's handshake is done: ask something and read the answer
		// (any HTTP answer) to learn of it, however loaded the machine.
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: " + sni + "\r\n\r\n")); err != nil {
			return "", err
		}
		if _, err := c.Read(make([]byte, 1)); err != nil {
			return "", err
		}
		return c.ConnectionState().PeerCertificates[0].Subject.CommonName, nil
	}
	if cn, err := served(webAddr, "web.example.com", nil); err != nil || cn != "web-1" {
		t.Fatalf("SIMPLE: %q, %v", cn, err)
	}
	good, bad := clients.IssueLeaf(t, "client"), web.IssueLeaf(t, "not-a-client")
	if cn, err := served(mtlsAddr, "mtls.example.com", &good); err != nil || cn != "mtls" {
		t.Errorf("MUTUAL with a client certificate of NAME-cacert's CA: %q, %v", cn, err)
	}
	if _, err := served(mtlsAddr, "mtls.example.com", &bad); err == nil {
		t.Error("MUTUAL took a client certificate of another CA")
	}
	if _, err := served(mtlsAddr, "mtls.example.com", nil); err == nil {
		t.Error("MUTUAL took a client without a certificate")
	}
	var optAddr net.Addr
	waitFor(t, func() bool { optAddr = gw.GatewayAddr(9446); return optAddr != nil })
	for name, tc := range map[string]struct {
		cert *tls.Certificate
		ok   bool
	}{"no certificate": {nil, true}, "a certificate of the CA": {&good, true}, "a certificate of another CA": {&bad, false}} {
		if _, err := served(optAddr, "mtls.example.com", tc.cert); (err == nil) != tc.ok {
			t.Errorf("OPTIONAL_MUTUAL with %s: err %v, want accepted %v", name, err, tc.ok)
		}
	}

	// Rotation, and another namespace's credential of the same name.
	push(own("web-cert", chain2, key2, nil), own("mtls-cert", mchain, mkey, nil), own("mtls-cert-cacert", nil, nil, clients.RootPEM()),
		xds.Credential{Namespace: "apps", Name: "mtls-cert", Cert: chain1, PrivateKey: key1})
	if cn, err := served(webAddr, "web.example.com", nil); err != nil || cn != "web-2" {
		t.Errorf("after the rotation: %q, %v", cn, err)
	}
	if cn, err := served(mtlsAddr, "mtls.example.com", &good); err != nil || cn != "mtls" {
		t.Errorf("MUTUAL beside another namespace's credential of its name: %q, %v", cn, err)
	}

	// A malformed credential and a MUTUAL one without CA: those servers
	// refuse, and say why on /debug/config.
	push(own("web-cert", chain2, key1, nil), own("mtls-cert", mchain, mkey, nil))
	if cn, err := served(webAddr, "web.example.com", nil); err == nil {
		t.Errorf("a mismatched key pair was served (%q)", cn)
	}
	if _, err := served(mtlsAddr, "mtls.example.com", &good); err == nil {
		t.Error("MUTUAL without any CA took a client")
	}
	sources := map[uint32]string{}
	for _, dp := range gw.debugConfig().GatewayPorts {
		for _, s := range dp.Servers {
			sources[dp.Port] = s.Credential
		}
	}
	if s := sources[9443]; len(s) < len("secret refused") || s[:len("secret refused")] != "secret refused" {
		t.Errorf("/debug/config credential of 9443: %q", s)
	}
	if sources[9444] != "secret" {
		t.Errorf("/debug/config credential of 9444: %q", sources[9444])
	}

	// Nothing pushed, no credential directory: refused.
	push()
	if _, err := served(webAddr, "web.example.com", nil); err == nil {
		t.Error("served without a credential")
	}
}

// TestEgressGatewayOriginatesWithPushedCredential: Istio's egress
// gateway with mutual TLS origination, its DestinationRule's
// credentialName a Secret pushed by the control plane (no credential
// directory): the external server sees the Secret's client certificate,
// then the renewed one after a push, and with the credential gone the
// gateway originates nothing (502), never without it.
func TestEgressGatewayOriginatesWithPushedCredential(t *testing.T) {
	var reached atomic.Int32
	ext := countingTLSServer(t, &reached, "external.example.com")
	push, hc := egressWithPushedCredentials(t, ext.Addr)
	client := func(cn string) xds.Credential {
		chain, key := meshtest.PEM(t, ext.CA.IssueLeaf(t, cn))
		return xds.Credential{Namespace: "istio-system", Name: "client-credential", Cert: chain, PrivateKey: key}
	}
	caCred := xds.Credential{Namespace: "istio-system", Name: "client-credential-cacert", CA: ext.CA.RootPEM()}
	push(client("from-secret"), caCred)
	if code, body := get(t, hc, "http://external.example.com/x"); code != 200 || echoField(body, "client") != "from-secret" {
		t.Fatalf("origination with the pushed credential: %d %q", code, body)
	}
	push(client("renewed"), caCred)
	if code, body := get(t, hc, "http://external.example.com/x"); code != 200 || echoField(body, "client") != "renewed" {
		t.Errorf("after the renewal: %d %q", code, body)
	}
	// Without the CA Secret the server cannot be verified (the system's
	// roots do not know its CA): refused, the server never sees a request.
	before := reached.Load()
	push(client("renewed"))
	if code, _ := get(t, hc, "http://external.example.com/x"); code == 200 || reached.Load() != before {
		t.Errorf("origination without the CA: %d, server reached %d more times", code, reached.Load()-before)
	}
	push()
	if code, _ := get(t, hc, "http://external.example.com/x"); code == 200 || reached.Load() != before {
		t.Errorf("origination without a credential: %d", code)
	}
}

// TestEgressGatewayOriginationChecksPushedCRL: the CRL of a pushed CA
// Secret (NAME-cacert's ca.crl) is applied to the external server's
// chain when the egress gateway originates TLS: a revoked server is
// refused and never sees the request.
func TestEgressGatewayOriginationChecksPushedCRL(t *testing.T) {
	root := meshtest.NewCRLIssuer(t, "external root", nil)
	serverCert, serverLeaf := root.ServerLeaf(t, "external.example.com")
	var reached atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached.Add(1) }))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{serverCert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	push, hc := egressWithPushedCredentials(t, srv.Listener.Addr().String())
	clientCert, _ := root.Leaf(t, "egress client")
	chain, key := meshtest.PEM(t, clientCert)
	client := xds.Credential{Namespace: "istio-system", Name: "client-credential", Cert: chain, PrivateKey: key}
	rootPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Cert.Raw})
	cacert := func(crl []byte) xds.Credential {
		return xds.Credential{Namespace: "istio-system", Name: "client-credential-cacert", CA: rootPEM, CRL: crl}
	}
	push(client, cacert(root.CRL(t, time.Now().Add(time.Hour))))
	if code, body := get(t, hc, "http://external.example.com/x"); code != 200 {
		t.Fatalf("with a CRL that revokes nothing: %d %q", code, body)
	}
	before := reached.Load()
	push(client, cacert(root.CRL(t, time.Now().Add(time.Hour), serverLeaf)))
	if code, _ := get(t, hc, "http://external.example.com/x"); code == 200 || reached.Load() != before {
		t.Errorf("to a revoked server: %d, server reached %d more times", code, reached.Load()-before)
	}
}

// egressWithPushedCredentials starts an egress gateway and a frontend
// whose requests to external.example.com go through it, the gateway
// originating mutual TLS to the server at addr with credentialName
// client-credential (egressConfig). push sends the gateway a view with
// creds as its pushed credentials.
func egressWithPushedCredentials(t *testing.T, addr string) (push func(creds ...xds.Credential), hc *http.Client) {
	t.Helper()
	ca := meshtest.NewCA(t, testTD)
	gw := startGateway(t, ca, "egressgateway", "", testLogger(t), nil)
	frontend := startProxyFor(t, ca, registry.Workload{Name: "frontend", Namespace: "web", ServiceAccount: "frontend", Labels: map[string]string{"app": "frontend"}}, "127.0.0.1:1", nil)
	external := registry.Service{Hostname: "external.example.com", Namespace: "istio-system",
		Ports:     []registry.Port{{Number: 80, Name: "http", Protocol: "HTTP"}, {Number: 443, Name: "http-origination", Protocol: "HTTP"}},
		Endpoints: []registry.Endpoint{{Address: addr, Workload: "istio-system/external"}}}
	gwSvc := serviceOf(gw)
	gwSvc.Hostname = "istio-egressgateway.istio-system.svc.cluster.local"
	svcs := []registry.Service{gwSvc, external}
	snap := config.NewSnapshot("1", parse(t, egressConfig))
	mustApply(t, frontend, xds.Build(snap, svcs, mesh(), xds.Proxy{ID: frontend.reg.Key(), Workload: frontend.reg}))
	version := 0
	push = func(creds ...xds.Credential) {
		t.Helper()
		version++
		v := xds.Build(snap, svcs, mesh(), xds.Proxy{ID: gw.reg.Key(), Workload: gw.reg, Gateway: true})
		v.Credentials = creds
		v.Version = fmt.Sprintf("%s-%d", v.Version, version)
		mustApply(t, gw, v)
	}
	return push, proxyClient(t, frontend)
}

// rsaSelfSigned is a self-signed RSA certificate for dns, as PEM, and
// the certificate itself (to trust it).
func rsaSelfSigned(t *testing.T, cn, dns string) (chain, key []byte, cert *x509.Certificate) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: cn}, DNSNames: []string{dns},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ = x509.ParseCertificate(der)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}), cert
}

// TestGatewayCredentialNamesAndCACredential: a server with
// credentialNames presents the RSA or the ECDSA certificate, whichever
// the client can use; a MUTUAL server's caCertCredentialName is the CA
// its clients' certificates must chain to, over its credential's own.
func TestGatewayCredentialNamesAndCACredential(t *testing.T) {
	ca := meshtest.NewCA(t, testTD)
	web := meshtest.NewCA(t, "web.test")
	clients, others := meshtest.NewCA(t, "clients.test"), meshtest.NewCA(t, "others.test")
	ecChain, ecKey := meshtest.PEM(t, web.IssueLeaf(t, "ecdsa", "dual.example.com"))
	rsaChain, rsaKey, rsaCert := rsaSelfSigned(t, "rsa", "dual.example.com")
	gw := startGateway(t, ca, "ingressgateway", "", testLogger(t), func(c *Config) {
		c.Gateway.Ports = map[uint32]string{9447: "127.0.0.1:0", 9448: "127.0.0.1:0"}
	})
	snap := config.NewSnapshot("1", parse(t, `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: dual, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 9447, name: https, protocol: HTTPS}
    hosts: [dual.example.com]
    tls: {mode: SIMPLE, credentialNames: [dual-rsa, dual-ecdsa]}
  - port: {number: 9448, name: https-mtls, protocol: HTTPS}
    hosts: [dual.example.com]
    tls: {mode: MUTUAL, credentialName: dual-ecdsa, caCertCredentialName: client-roots}
`))
	v := xds.Build(snap, nil, mesh(), xds.Proxy{ID: gw.reg.Key(), Workload: gw.reg, Gateway: true})
	own := func(name string, chain, key, caPEM []byte) xds.Credential {
		return xds.Credential{Namespace: "istio-system", Name: name, Cert: chain, PrivateKey: key, CA: caPEM}
	}
	v.Credentials = []xds.Credential{own("dual-rsa", rsaChain, rsaKey, nil), own("dual-ecdsa", ecChain, ecKey, others.RootPEM()),
		own("client-roots", nil, nil, clients.RootPEM())}
	mustApply(t, gw, v)
	var dual, mtls net.Addr
	waitFor(t, func() bool {
		dual, mtls = gw.GatewayAddr(9447), gw.GatewayAddr(9448)
		return dual != nil && mtls != nil
	})

	roots := web.Pool()
	roots.AddCert(rsaCert)
	for name, suite := range map[string]uint16{"rsa": tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, "ecdsa": tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256} {
		c, err := tls.Dial("tcp", dual.String(), &tls.Config{ServerName: "dual.example.com", RootCAs: roots, MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{suite}})
		if err != nil {
			t.Errorf("a client that takes %s only: %v", name, err)
			continue
		}
		if cn := c.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != name {
			t.Errorf("a client that takes %s only got %q", name, cn)
		}
		c.Close()
	}

	mutual := func(cert tls.Certificate) error {
		c, err := tls.Dial("tcp", mtls.String(), &tls.Config{ServerName: "dual.example.com", RootCAs: web.Pool(), Certificates: []tls.Certificate{cert}})
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); err != nil {
			if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
				return err
			}
		}
		return nil
	}
	if err := mutual(clients.IssueLeaf(t, "client")); err != nil {
		t.Errorf("a client of caCertCredentialName's CA: %v", err)
	}
	if err := mutual(others.IssueLeaf(t, "other")); err == nil {
		t.Error("a client of the credential's own CA was taken, though caCertCredentialName takes precedence")
	}
}
