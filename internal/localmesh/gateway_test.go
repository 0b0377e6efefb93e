package localmesh

import (
	"strings"
	"testing"
)

// TestGatewayProcess: a gateway workload's proxy is `zmesh proxy
// --gateway` with its ports mapped, its credential directory resolved
// against the mesh directory, and no app.
func TestGatewayProcess(t *testing.T) {
	m := member{Workload: Workload{Name: "istio-ingressgateway", Namespace: "istio-system", ServiceAccount: "istio-ingressgateway",
		Labels: map[string]string{"istio": "ingressgateway"}, Services: []string{"istio-ingressgateway"},
		Gateway: &GatewaySpec{Ports: map[uint32]string{8443: "127.0.0.1:9443", 443: "127.0.0.1:8443"}, CredentialDir: "creds", CertFileDirs: []string{"certs", "/etc/gw"}}},
		inbound: "127.0.0.1:1", admin: "127.0.0.1:2", outbound: "127.0.0.1:3"}
	p := proxyProcess(Config{Binary: "zmesh", Dir: "/mesh", TrustDomain: "cluster.local"}, m, "127.0.0.1:15012", "/data", "/data/token")
	argv := strings.Join(p.argv, " ")
	for _, want := range []string{"zmesh proxy --gateway", "--gateway-port 443=127.0.0.1:8443,8443=127.0.0.1:9443", "--credential-dir /mesh/creds",
		"--cert-file-dir /mesh/certs --cert-file-dir /etc/gw",
		"--labels istio=ingressgateway", "--gateway-host 127.0.0.1", "--inbound 127.0.0.1:1"} {
		if !strings.Contains(argv, want) {
			t.Errorf("argv %q lacks %q", argv, want)
		}
	}
	if strings.Contains(argv, "--app ") {
		t.Errorf("a gateway's proxy was given an app: %q", argv)
	}
}
