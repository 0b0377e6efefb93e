package proxy

import (
	"crypto/tls"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/meshtest"
	"github.com/zmesh/zmesh/internal/registry"
	"github.com/zmesh/zmesh/internal/xds"
)

// TestOriginationChecksRevocation: a DestinationRule's caCrl, and a
// credential's ca.crl, are applied to the server's chain when the proxy
// originates TLS. A revoked server, a CRL past its nextUpdate, an
// intermediate without a CRL of its own and an unreadable CRL each fail
// the request (503); before, the CRL was accepted and never read, and a
// revoked server was trusted.
func TestOriginationChecksRevocation(t *testing.T) {
	root := meshtest.NewCRLIssuer(t, "egress root", nil)
	serverCert, serverLeaf := root.ServerLeaf(t, "crl.example.com")
	inter := meshtest.NewCRLIssuer(t, "egress intermediate", root)
	interCert, _ := inter.ServerLeaf(t, "crl.example.com")

	serve := func(cert tls.Certificate) string {
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
		srv.StartTLS()
		t.Cleanup(srv.Close)
		return srv.Listener.Addr().String()
	}
	direct, viaInter := serve(serverCert), serve(interCert)

	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caFile := write("ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Cert.Raw}))
	good := write("good.crl", root.CRL(t, time.Now().Add(time.Hour)))
	revoked := write("revoked.crl", root.CRL(t, time.Now().Add(time.Hour), serverLeaf))
	stale := write("stale.crl", root.CRL(t, time.Now().Add(-30*time.Second)))
	garbage := write("garbage.crl", []byte("not a CRL"))
	credDir := filepath.Join(dir, "creds")
	for name, crlData := range map[string][]byte{"good-cred": root.CRL(t, time.Now().Add(time.Hour)), "revoked-cred": root.CRL(t, time.Now().Add(time.Hour), serverLeaf)} {
		d := filepath.Join(credDir, name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(d, "ca.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Cert.Raw}), 0o600)
		os.WriteFile(filepath.Join(d, "ca.crl"), crlData, 0o600)
	}

	ca := meshtest.NewCA(t, testTD)
	w := registry.Workload{Name: "frontend", Namespace: "web", ServiceAccount: "frontend", Labels: map[string]string{"app": "frontend"}}
	client := startProxyFor(t, ca, w, "127.0.0.1:1", func(c *Config) { c.CredentialDir = credDir })
	hc := proxyClient(t, client)
	apply := func(version, addr, tls string) {
		t.Helper()
		svc := registry.Service{Hostname: "crl.example.com", Namespace: "egress",
			Ports:     []registry.Port{{Number: 80, Name: "http", Protocol: "HTTP", TargetPort: 443}},
			Endpoints: []registry.Endpoint{{Address: addr, Workload: "egress/crl"}}}
		doc := "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: crl, namespace: egress}\nspec:\n  host: crl.example.com\n  trafficPolicy:\n    tls: " + tls + "\n"
		if err := client.Apply(xds.Build(config.NewSnapshot(version, parse(t, doc)), []registry.Service{svc}, mesh(), xds.Proxy{ID: "web/frontend", Workload: w})); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name, addr, tls string
		want            int
	}{
		{"no CRL", direct, "{mode: SIMPLE, caCertificates: " + caFile + "}", 200},
		{"a CRL that revokes nothing", direct, "{mode: SIMPLE, caCertificates: " + caFile + ", caCrl: " + good + "}", 200},
		{"the server revoked", direct, "{mode: SIMPLE, caCertificates: " + caFile + ", caCrl: " + revoked + "}", 503},
		{"the server revoked, names checked by subjectAltNames", direct, "{mode: SIMPLE, caCertificates: " + caFile + ", caCrl: " + revoked + ", subjectAltNames: [crl.example.com]}", 503},
		{"a CRL past its nextUpdate", direct, "{mode: SIMPLE, caCertificates: " + caFile + ", caCrl: " + stale + "}", 503},
		{"an unreadable CRL", direct, "{mode: SIMPLE, caCertificates: " + caFile + ", caCrl: " + garbage + "}", 503},
		{"a missing CRL file", direct, "{mode: SIMPLE, caCertificates: " + caFile + ", caCrl: " + good + ".gone}", 503},
		{"an intermediate without a CRL of its own", viaInter, "{mode: SIMPLE, caCertificates: " + caFile + ", caCrl: " + good + "}", 503},
		{"the credential's CRL revokes nothing", direct, "{mode: SIMPLE, credentialName: good-cred}", 200},
		{"the credential's CRL revokes the server", direct, "{mode: SIMPLE, credentialName: revoked-cred}", 503},
	} {
		t.Run(tc.name, func(t *testing.T) {
			apply(tc.name, tc.addr, tc.tls)
			if code, body := get(t, hc, "http://crl.example.com/"); code != tc.want {
				t.Fatalf("%d %q, want %d", code, body, tc.want)
			}
		})
	}
}
