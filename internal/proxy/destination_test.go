package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/meshtest"
	"github.com/zmesh/zmesh/internal/registry"
	"github.com/zmesh/zmesh/internal/xds"
)

// backendDR is a DestinationRule for the backend service with spec.
func backendDR(spec string) string {
	return "\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: backend, namespace: api}\nspec:\n  host: backend.api.svc.cluster.local\n" + spec + "\n"
}

// TestDestinationRuleDisable: tls DISABLE makes the client speak
// plaintext even to a server with a proxy, whatever automatic mTLS would
// do: a PERMISSIVE server's app sees the request with no identity, and a
// STRICT server refuses it.
func TestDestinationRuleDisable(t *testing.T) {
	disable := backendDR("  trafficPolicy: {tls: {mode: DISABLE}}")
	p := newPair(t, "")
	mustApply(t, p.client, clientViewFor(t, "c2", p.server, disable))
	if d := p.client.debugConfig(); len(d.Services) != 1 || strings.Join(d.Services[0].DestinationRules, ",") != "api/backend" {
		t.Errorf("/debug/config services %+v, want api/backend governing backend", d.Services)
	}
	code, body := get(t, p.http, "http://backend.api.svc.cluster.local/")
	if code != 200 || echoField(body, "xfcc") != "" {
		t.Fatalf("DISABLE to a PERMISSIVE server: %d %q, want 200 with no client identity", code, body)
	}

	mustApply(t, p.server, policyView(t, "s2", mesh(), strictMesh))
	mustApply(t, p.client, clientViewFor(t, "c3", p.server, strictMesh+disable))
	if code, body := get(t, p.http, "http://backend.api.svc.cluster.local/"); code != http.StatusServiceUnavailable {
		t.Fatalf("DISABLE to a STRICT server: %d %q, want 503 (refused)", code, body)
	}
	// Without the rule, automatic mTLS reaches the same server.
	mustApply(t, p.client, clientViewFor(t, "c4", p.server, strictMesh))
	if code, body := get(t, p.http, "http://backend.api.svc.cluster.local/"); code != 200 || echoField(body, "xfcc") == "" {
		t.Fatalf("automatic mTLS to a STRICT server: %d %q", code, body)
	}
}

// TestDestinationRulePortLevel: portLevelSettings override the host's
// setting at their port only.
func TestDestinationRulePortLevel(t *testing.T) {
	p := newPair(t, "")
	mustApply(t, p.client, clientViewFor(t, "c2", p.server, backendDR(`  trafficPolicy:
    tls: {mode: ISTIO_MUTUAL}
    portLevelSettings:
    - port: {number: 80}
      tls: {mode: DISABLE}`)))
	if code, body := get(t, p.http, "http://backend.api.svc.cluster.local/"); code != 200 || echoField(body, "xfcc") != "" {
		t.Errorf("port 80 (DISABLE): %d %q, want plaintext", code, body)
	}
	if code, body := get(t, p.http, "http://backend.api.svc.cluster.local:8080/"); code != 200 || !strings.Contains(echoField(body, "xfcc"), "spiffe://cluster.local/ns/web/sa/frontend") {
		t.Errorf("port 8080 (ISTIO_MUTUAL): %d %q, want mTLS", code, body)
	}
}

// TestDestinationRuleIstioMutual: ISTIO_MUTUAL insists on mTLS where
// automatic mTLS would send plaintext (an endpoint without a proxy): the
// request fails rather than go out in the clear, and an endpoint of no
// known identity is refused before any byte is sent.
func TestDestinationRuleIstioMutual(t *testing.T) {
	p := newPair(t, "")
	var hits atomic.Int32
	legacy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	t.Cleanup(legacy.Close)
	svc := func(identity string) registry.Service {
		return registry.Service{Hostname: "legacy.api.svc.cluster.local", Namespace: "api",
			Endpoints: []registry.Endpoint{{Address: legacy.Listener.Addr().String(), Identity: identity, Workload: "api/legacy"}}}
	}
	view := func(version, identity, yaml string) *xds.View {
		snap := config.NewSnapshot(version, parse(t, yaml))
		return xds.Build(snap, []registry.Service{serviceOf(p.server), svc(identity)}, mesh(), xds.Proxy{ID: "web/frontend", Workload: registry.Workload{Name: "frontend", Namespace: "web"}})
	}
	const rule = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: legacy, namespace: api}\nspec: {host: legacy, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}\n"

	mustApply(t, p.client, view("c2", "spiffe://cluster.local/ns/api/sa/legacy", strictMesh))
	if code, _ := get(t, p.http, "http://legacy.api.svc.cluster.local/"); code != 200 || hits.Load() != 1 {
		t.Fatalf("automatic mTLS to an endpoint without a proxy: %d, %d hits", code, hits.Load())
	}
	mustApply(t, p.client, view("c3", "spiffe://cluster.local/ns/api/sa/legacy", strictMesh+"---\n"+rule))
	if code, _ := get(t, p.http, "http://legacy.api.svc.cluster.local/"); code != http.StatusServiceUnavailable || hits.Load() != 1 {
		t.Fatalf("ISTIO_MUTUAL to an endpoint without a proxy: %d, %d hits; want 503 and no plaintext request", code, hits.Load())
	}
	mustApply(t, p.client, view("c4", "", strictMesh+"---\n"+rule))
	if code, _ := get(t, p.http, "http://legacy.api.svc.cluster.local/"); code != http.StatusServiceUnavailable || hits.Load() != 1 {
		t.Fatalf("ISTIO_MUTUAL to an endpoint of unknown identity: %d, %d hits", code, hits.Load())
	}
	// The mesh service, under the same kind of rule, still works.
	mustApply(t, p.client, view("c5", "", strictMesh+backendDR("  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}")))
	if code, body := get(t, p.http, "http://backend.api.svc.cluster.local/"); code != 200 || echoField(body, "xfcc") == "" {
		t.Fatalf("ISTIO_MUTUAL to a proxy: %d %q", code, body)
	}
}

// TestDestinationRuleOrigination: the app sends plaintext HTTP to a
// ServiceEntry host, and a DestinationRule SIMPLE or MUTUAL makes the
// proxy originate TLS to it, verifying the server with the rule's CA and
// names, presenting the rule's client certificate for MUTUAL; any failed
// check fails the request (503) instead of sending in the clear or
// trusting the server.
func TestDestinationRuleOrigination(t *testing.T) {
	ca := meshtest.NewCA(t, testTD)
	ext := meshtest.NewTLSServer(t, "external.example.com")
	dir := t.TempDir()
	caFile := ext.CA.WriteRoot(t, dir, "ca.pem")
	certFile, keyFile := meshtest.WriteCert(t, ext.CA.IssueLeaf(t, "frontend-client"), dir, "client")
	credDir := filepath.Join(dir, "creds")
	if err := os.MkdirAll(filepath.Join(credDir, "client-credential"), 0o755); err != nil {
		t.Fatal(err)
	}
	meshtest.WriteCert(t, ext.CA.IssueLeaf(t, "from-credential"), filepath.Join(credDir, "client-credential"), "tls")
	ext.CA.WriteRoot(t, filepath.Join(credDir, "client-credential"), "ca.crt")

	// Files a hostile rule may name: a FIFO (no writer: a blocking open
	// never returns) and a device that never ends.
	fifo := filepath.Join(dir, "fifo.pem")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}

	w := registry.Workload{Name: "frontend", Namespace: "web", ServiceAccount: "frontend", Labels: map[string]string{"app": "frontend"}}
	client := startProxyFor(t, ca, w, "127.0.0.1:1", func(c *Config) { c.CredentialDir = credDir })
	hc := proxyClient(t, client)
	svc := registry.Service{Hostname: "external.example.com", Namespace: "egress",
		Ports:     []registry.Port{{Number: 80, Name: "http", Protocol: "HTTP", TargetPort: 443}},
		Endpoints: []registry.Endpoint{{Address: ext.Addr, Workload: "egress/external"}}}
	apply := func(version, tls string) error {
		doc := "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: external, namespace: egress}\nspec:\n  host: external.example.com\n  trafficPolicy:\n    portLevelSettings:\n    - port: {number: 80}\n      tls: " + tls + "\n"
		snap := config.NewSnapshot(version, parse(t, doc))
		return client.Apply(xds.Build(snap, []registry.Service{svc}, mesh(), xds.Proxy{ID: "web/frontend", Workload: w}))
	}
	for _, tc := range []struct {
		name, tls  string
		wantCode   int
		wantClient string
		wantSNI    string
	}{
		{"SIMPLE with the server's CA", "{mode: SIMPLE, caCertificates: " + caFile + "}", 200, "none", "external.example.com"},
		{"SIMPLE with SAN and SNI", "{mode: SIMPLE, caCertificates: " + caFile + ", sni: other.example.com, subjectAltNames: [external.example.com]}", 200, "none", "other.example.com"},
		{"SIMPLE with a wrong SAN", "{mode: SIMPLE, caCertificates: " + caFile + ", subjectAltNames: [evil.example.com]}", 503, "", ""},
		{"SIMPLE with a SNI the certificate does not name", "{mode: SIMPLE, caCertificates: " + caFile + ", sni: evil.example.com}", 503, "", ""},
		{"SIMPLE with the system roots", "{mode: SIMPLE}", 503, "", ""},
		{"SIMPLE skipping verification", "{mode: SIMPLE, insecureSkipVerify: true}", 200, "none", "external.example.com"},
		{"MUTUAL with files", "{mode: MUTUAL, caCertificates: " + caFile + ", clientCertificate: " + certFile + ", privateKey: " + keyFile + "}", 200, "frontend-client", "external.example.com"},
		{"MUTUAL with a missing key file", "{mode: MUTUAL, caCertificates: " + caFile + ", clientCertificate: " + certFile + ", privateKey: " + keyFile + ".gone}", 503, "", ""},
		{"SIMPLE with a FIFO for caCertificates", "{mode: SIMPLE, caCertificates: " + fifo + "}", 503, "", ""},
		{"SIMPLE with a device for caCertificates", "{mode: SIMPLE, caCertificates: /dev/zero}", 503, "", ""},
		{"MUTUAL with a FIFO for the key", "{mode: MUTUAL, caCertificates: " + caFile + ", clientCertificate: " + certFile + ", privateKey: " + fifo + "}", 503, "", ""},
		{"MUTUAL with credentialName", "{mode: MUTUAL, credentialName: client-credential}", 200, "from-credential", "external.example.com"},
		{"MUTUAL with an unknown credentialName", "{mode: MUTUAL, credentialName: nope}", 503, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := apply(tc.name, tc.tls); err != nil {
				t.Fatal(err)
			}
			code, body := get(t, hc, "http://external.example.com/some/path?q=1")
			if code != tc.wantCode {
				t.Fatalf("%d %q, want %d", code, body, tc.wantCode)
			}
			if code != 200 {
				return
			}
			if echoField(body, "client") != tc.wantClient || echoField(body, "sni") != tc.wantSNI || echoField(body, "path") != "/some/path?q=1" {
				t.Errorf("server saw %q, want client=%s sni=%s", body, tc.wantClient, tc.wantSNI)
			}
		})
	}

	// A TCP stream (CONNECT) to the host is originated too: the app's
	// plaintext HTTP inside it reaches the HTTPS server over TLS.
	if err := apply("tcp", "{mode: SIMPLE, caCertificates: "+caFile+"}"); err != nil {
		t.Fatal(err)
	}
	c, br := connect(t, client, "external.example.com:80")
	io.WriteString(c, "GET /over-tcp HTTP/1.1\r\nHost: external.example.com\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("HTTP over the originated stream: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || echoField(string(b), "path") != "/over-tcp" || echoField(string(b), "sni") != "external.example.com" {
		t.Errorf("over the originated stream: %d %q", resp.StatusCode, b)
	}

	// Without a rule the app's plaintext goes as it is, and the HTTPS
	// server refuses it: origination is what made the requests work.
	if err := client.Apply(xds.Build(config.NewSnapshot("none", nil), []registry.Service{svc}, mesh(), xds.Proxy{ID: "web/frontend", Workload: w})); err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, hc, "http://external.example.com/"); code == 200 {
		t.Errorf("plaintext to the HTTPS server answered %d %q", code, body)
	}
}

// TestDestinationRuleRejected: a pushed rule that does not validate is
// refused with the whole push, and the last good rule stays in force.
func TestDestinationRuleRejected(t *testing.T) {
	p := newPair(t, "")
	mustApply(t, p.client, clientViewFor(t, "c2", p.server, backendDR("  trafficPolicy: {tls: {mode: DISABLE}}")))
	bad := clientViewFor(t, "c3", p.server, "")
	bad.DestinationRules = parse(t, backendDR("  trafficPolicy: {tls: {mode: MUTUAL}}"))
	if err := p.client.Apply(bad); err == nil || !strings.Contains(err.Error(), "client certificate required") {
		t.Fatalf("Apply of a MUTUAL rule without a certificate: %v", err)
	}
	if code, body := get(t, p.http, "http://backend.api.svc.cluster.local/"); code != 200 || echoField(body, "xfcc") != "" {
		t.Fatalf("after the rejected push: %d %q, want the DISABLE rule still in force", code, body)
	}
}
