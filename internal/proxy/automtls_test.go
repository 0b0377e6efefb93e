package proxy

import (
	"bufio"
	"testing"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/registry"
	"github.com/zmesh/zmesh/internal/xds"
)

// clientViewFor is the client proxy's view as the control plane builds it
// from policies (yaml) and the server proxy's service: with each
// endpoint's mTLS mode resolved (automatic mTLS).
func clientViewFor(t *testing.T, version string, server *testProxy, yaml string) *xds.View {
	t.Helper()
	snap := config.NewSnapshot(version, parse(t, yaml))
	return xds.Build(snap, []registry.Service{serviceOf(server)}, mesh(), xds.Proxy{ID: "web/frontend", Workload: registry.Workload{Name: "frontend", Namespace: "web"}})
}

func TestAutoMTLSSpeaksPlaintextToADisableServer(t *testing.T) {
	const disable = `
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: backend, namespace: api}
spec:
  selector: {matchLabels: {app: backend}}
  mtls: {mode: DISABLE}
`
	p := newPair(t, disable)
	v := clientViewFor(t, "c2", p.server, disable)
	if m := v.Services[0].Endpoints[0].MTLSMode; m != "DISABLE" {
		t.Fatalf("endpoint mode %q", m)
	}
	mustApply(t, p.client, v)
	code, body := get(t, p.http, "http://backend.api.svc.cluster.local/")
	if code != 200 {
		t.Fatalf("to a DISABLE server: %d %s", code, body)
	}
	if xfcc := echoField(body, "xfcc"); xfcc != "" {
		t.Fatalf("plaintext request carries an identity: %q", xfcc)
	}
	// TCP too: a CONNECT stream reaches the app as plaintext raw TCP.
	appAddr, _ := tcpApp(t)
	srv := startProxyAt(t, p.ca, "api", "backend", appAddr, testLogger(t))
	mustApply(t, srv, policyView(t, "s1", mesh(), disable))
	mustApply(t, p.client, clientViewFor(t, "c3", srv, disable))
	c, br := connect(t, p.client, "backend.api.svc.cluster.local:80")
	expectLine(t, br, "220 line-echo ready")
	c.Write([]byte("hello\n"))
	expectLine(t, br, "hello")

	// The same server under STRICT: the client is told so and speaks mTLS.
	const strict = `
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec:
  mtls: {mode: STRICT}
`
	mustApply(t, p.server, policyView(t, "s2", mesh(), strict))
	mustApply(t, p.client, clientViewFor(t, "c4", p.server, strict))
	code, body = get(t, p.http, "http://backend.api.svc.cluster.local/")
	if code != 200 || echoField(body, "xfcc") == "" {
		t.Fatalf("to a STRICT server: %d %s", code, body)
	}
}

// expectLine reads one line from br and fails unless it is want.
func expectLine(t *testing.T, br *bufio.Reader, want string) {
	t.Helper()
	got, err := br.ReadString('\n')
	if err != nil || got != want+"\n" {
		t.Fatalf("read %q, %v; want %q", got, err, want)
	}
}
