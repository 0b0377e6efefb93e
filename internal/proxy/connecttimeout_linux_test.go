package proxy

import (
	"fmt"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/meshtest"
	"github.com/zmesh/zmesh/internal/registry"
	"github.com/zmesh/zmesh/internal/xds"
)

// unresponsiveAddr returns a loopback address whose SYNs go unanswered:
// a socket listening with a backlog of zero, never accepting, its queue
// filled. A dial there hangs until its time-out, as toward a host that
// drops packets.
func unresponsiveAddr(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
	for range 4 { // fill the accept queue; later SYNs are dropped
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			t.Cleanup(func() { c.Close() })
		}
	}
	return addr
}

// TestDestinationRuleConnectTimeout: connectionPool.tcp.connectTimeout
// bounds the dial to an endpoint that does not answer, well under the
// proxy's default (dialTimeout); the request fails with 503.
func TestDestinationRuleConnectTimeout(t *testing.T) {
	addr := unresponsiveAddr(t)
	if c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond); err == nil {
		c.Close()
		t.Skip("this kernel answers SYNs past a full accept queue; cannot make an unresponsive endpoint")
	}
	ca := meshtest.NewCA(t, testTD)
	w := registry.Workload{Name: "frontend", Namespace: "web", ServiceAccount: "frontend"}
	client := startProxyFor(t, ca, w, "127.0.0.1:1", nil)
	hc := proxyClient(t, client)
	svc := registry.Service{Hostname: "slow.example.com", Namespace: "egress",
		Ports:     []registry.Port{{Number: 80, Name: "http", Protocol: "HTTP"}},
		Endpoints: []registry.Endpoint{{Address: addr, Workload: "egress/slow"}}}
	doc := "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: slow, namespace: egress}\nspec:\n  host: slow.example.com\n  trafficPolicy: {connectionPool: {tcp: {connectTimeout: 200ms}}}\n"
	if err := client.Apply(xds.Build(config.NewSnapshot("1", parse(t, doc)), []registry.Service{svc}, mesh(), xds.Proxy{ID: "web/frontend", Workload: w})); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	code, body := get(t, hc, "http://slow.example.com/")
	elapsed := time.Since(start)
	if code != http.StatusServiceUnavailable && code != http.StatusBadGateway {
		t.Errorf("got %d %q, want the request failed", code, body)
	}
	if elapsed > dialTimeout/2 {
		t.Errorf("the request took %s: connectTimeout 200ms did not bound the dial (default %s)", elapsed, dialTimeout)
	}
}
