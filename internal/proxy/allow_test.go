package proxy

import (
	"net"
	"net/http"
	"net/netip"
	"testing"

	"github.com/zmesh/zmesh/internal/meshtest"
	"github.com/zmesh/zmesh/internal/registry"
)

func TestAdminAllowed(t *testing.T) {
	host := []netip.Prefix{netip.MustParsePrefix("10.200.0.1/32")}
	for _, tc := range []struct {
		remote string
		allow  []netip.Prefix
		want   bool
	}{
		{"127.0.0.1:5000", host, true},
		{"127.9.9.9:5000", host, true},
		{"[::1]:5000", host, true},
		{"10.200.0.1:5000", host, true},
		{"[::ffff:10.200.0.1]:5000", host, true},
		{"10.200.0.2:5000", host, false}, // another pod on the bridge
		{"192.0.2.1:5000", nil, false},
		{"[2001:db8::1]:5000", host, false},
	} {
		addr, err := net.ResolveTCPAddr("tcp", tc.remote)
		if err != nil {
			t.Fatal(err)
		}
		if got := allowed(addr, tc.allow); got != tc.want {
			t.Errorf("allowed(%s, %v) = %v, want %v", tc.remote, tc.allow, got, tc.want)
		}
	}
}

// TestAdminAllowKeepsLoopback: with AdminAllow set, the admin listener
// still serves loopback (the proxy's own tools, probes in the pod).
func TestAdminAllowKeepsLoopback(t *testing.T) {
	w := registry.Workload{Name: "frontend", Namespace: "web", ServiceAccount: "frontend"}
	p := startProxyFor(t, meshtest.NewCA(t, testTD), w, "127.0.0.1:1", func(c *Config) {
		c.AdminAllow = []netip.Prefix{netip.MustParsePrefix("10.200.0.1/32")}
	})
	resp, err := http.Get("http://" + p.AdminAddr().String() + "/metrics")
	if err != nil {
		t.Fatalf("admin over loopback: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("admin over loopback: %d", resp.StatusCode)
	}
}
