package proxy

import (
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/zmesh/zmesh/internal/meshtest"
	"github.com/zmesh/zmesh/internal/registry"
	"github.com/zmesh/zmesh/internal/xds"
)

// TestProxyAnswersDNSForItsServices: with DNSAddr set, the proxy answers
// the mesh names of each push with their virtual addresses.
func TestProxyAnswersDNSForItsServices(t *testing.T) {
	ca := meshtest.NewCA(t, testTD)
	w := registry.Workload{Name: "frontend", Namespace: "web", ServiceAccount: "frontend"}
	p := startProxyFor(t, ca, w, "127.0.0.1:1", func(c *Config) { c.DNSAddr = "127.0.0.1:0" })
	ask := func(name string) []dns.RR {
		t.Helper()
		q := new(dns.Msg)
		q.SetQuestion(name, dns.TypeA)
		r, _, err := (&dns.Client{Timeout: 2 * time.Second}).Exchange(q, p.DNSAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		return r.Answer
	}
	svcs := registry.AllocateAddresses([]registry.Service{{Hostname: "backend.api.svc.cluster.local", Namespace: "api"}})
	mustApply(t, p, &xds.View{Version: "1", Mesh: mesh(), Services: svcs})
	got := ask("backend.api.")
	if len(got) != 1 || got[0].(*dns.A).A.String() != svcs[0].Addresses[0] {
		t.Fatalf("answers %v, want %s", got, svcs[0].Addresses[0])
	}
	// The next push replaces the names.
	mustApply(t, p, &xds.View{Version: "2", Mesh: mesh()})
	if got := ask("backend.api."); len(got) != 0 {
		t.Fatalf("a removed service still answers: %v", got)
	}
}
