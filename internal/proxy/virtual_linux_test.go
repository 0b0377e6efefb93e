//go:build linux

package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/zmesh/zmesh/internal/meshtest"
	"github.com/zmesh/zmesh/internal/registry"
)

// TestCapturedTLSRouteBySNI: an app's own TLS, captured, follows the
// VirtualService's tls route for its SNI (to secure-v2), untouched end to
// end; a ClientHello for another name goes where it was addressed.
func TestCapturedTLSRouteBySNI(t *testing.T) {
	ns := newTestNetns(t, "10.79.0.2")
	ca := meshtest.NewCA(t, testTD)
	app := func(answer string) *httptest.Server {
		s := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, answer) }))
		t.Cleanup(s.Close)
		return s
	}
	v1, v2 := app("secure-v1"), app("secure-v2")
	p1 := startProxyAt(t, ca, "api", "secure-v1", v1.Listener.Addr().String(), testLogger(t))
	p2 := startProxyAt(t, ca, "api", "secure-v2", v2.Listener.Addr().String(), testLogger(t))
	for _, s := range []*testProxy{p1, p2} {
		mustApply(t, s, policyView(t, "s1", mesh(), strictMesh))
	}
	svc := func(tp *testProxy, host, vip string) registry.Service {
		s := serviceOf(tp)
		s.Hostname, s.Addresses, s.Ports = host, []string{vip}, []registry.Port{{Number: 443, Name: "https"}}
		return s
	}
	v := policyView(t, "c1", mesh(), "")
	v.Services = []registry.Service{
		svc(p1, "secure.api.svc.cluster.local", "240.240.0.13"),
		svc(p2, "secure-v2.api.svc.cluster.local", "240.240.0.14"),
	}
	v.VirtualServices = parse(t, vsHeader+`  hosts: [secure.api.svc.cluster.local]
  tls:
  - match: [{sniHosts: [secure.api.svc.cluster.local], port: 443}]
    route: [{destination: {host: secure-v2}}]
`)
	cli := startCapturedProxy(t, ca, ns)
	mustApply(t, cli, v)
	ns.redirectOutbound(t, uint16(cli.OutboundAddr().(*net.TCPAddr).Port))

	get := func(dialTo, sni string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		raw, err := ns.dial(ctx, dialTo)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		raw.SetDeadline(time.Now().Add(10 * time.Second))
		tc := tls.Client(raw, &tls.Config{ServerName: sni, InsecureSkipVerify: true})
		io.WriteString(tc, "GET / HTTP/1.1\r\nHost: "+sni+"\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
		if err != nil {
			t.Fatalf("TLS to %s (SNI %s): %v", dialTo, sni, err)
		}
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if got := get("240.240.0.13:443", "secure.api.svc.cluster.local"); got != "secure-v2" {
		t.Errorf("TLS with the routed SNI reached %q, want secure-v2", got)
	}
	if got := get("240.240.0.13:443", "other.example.com"); got != "secure-v1" {
		t.Errorf("TLS with another SNI reached %q, want secure-v1 (its address)", got)
	}
}
