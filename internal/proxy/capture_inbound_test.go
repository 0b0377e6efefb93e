package proxy

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/zmesh/zmesh/internal/meshtest"
	"github.com/zmesh/zmesh/internal/registry"
)

// TestCapturedInboundDeliversToTheOriginalPort: a connection redirected to
// the inbound listener goes to the app port it was addressed to (Istio's
// inbound passthrough), never to one of the proxy's own ports. The
// kernel's answer is injected here; TestCapturedOutbound has the real one.
func TestCapturedInboundDeliversToTheOriginalPort(t *testing.T) {
	ca := meshtest.NewCA(t, testTD)
	main := echoApp(t)
	var hits atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	t.Cleanup(other.Close)
	otherPort := other.Listener.Addr().(*net.TCPAddr).Port
	var dst atomic.Value // netip.AddrPort: what the "kernel" says, per test case
	dst.Store(netip.AddrPort{})
	w := registry.Workload{Name: "backend", Namespace: "api", ServiceAccount: "backend"}
	srv := startProxyFor(t, ca, w, main.Listener.Addr().String(), func(c *Config) {
		c.OriginalDst = func(net.Conn) (netip.AddrPort, error) { return dst.Load().(netip.AddrPort), nil }
	})
	mustApply(t, srv, policyView(t, "s1", mesh(), permissiveMesh))
	get := func() (int, error) {
		tr := &http.Transport{}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr}).Get("http://" + srv.InboundAddr().String() + "/")
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, nil
	}

	// Addressed to the app's other port: delivered there.
	dst.Store(netip.MustParseAddrPort("10.0.0.5:" + strconv.Itoa(otherPort)))
	if code, err := get(); err != nil || code != 200 || hits.Load() != 1 {
		t.Fatalf("to the original port: %d %v, other app hit %d times", code, err, hits.Load())
	}
	// Addressed to the proxy's admin port: refused.
	dst.Store(netip.MustParseAddrPort("10.0.0.5:" + strconv.Itoa(srv.AdminAddr().(*net.TCPAddr).Port)))
	if code, err := get(); err == nil {
		t.Fatalf("redirected from the admin port: %d", code)
	}
}
