package registry_test

import (
	"fmt"
	"net/netip"
	"reflect"
	"testing"

	"github.com/zmesh/zmesh/internal/registry"
)

func TestAllocateAddresses(t *testing.T) {
	svc := func(host string, addrs ...string) registry.Service {
		return registry.Service{Hostname: host, Addresses: addrs}
	}
	tests := []struct {
		name  string
		in    []registry.Service
		check func(t *testing.T, in, out []registry.Service)
	}{
		{
			name: "a service without an address gets one in 240.240.0.0/16",
			in:   []registry.Service{svc("backend.api.svc.cluster.local")},
			check: func(t *testing.T, _, out []registry.Service) {
				ip := netip.MustParseAddr(out[0].Addresses[0])
				if !registry.AutoAllocatePrefix.Contains(ip) || ip == registry.AutoAllocatePrefix.Addr() || ip == netip.MustParseAddr("240.240.255.255") {
					t.Fatalf("allocated %s", ip)
				}
			},
		},
		{
			name: "declared addresses are kept and never handed out again",
			in: func() []registry.Service {
				// Find what backend would get, and declare it for another service.
				a := registry.AllocateAddresses([]registry.Service{svc("backend.api.svc.cluster.local")})[0].Addresses[0]
				return []registry.Service{svc("backend.api.svc.cluster.local"), svc("db.example.com", a)}
			}(),
			check: func(t *testing.T, in, out []registry.Service) {
				if !reflect.DeepEqual(out[1].Addresses, in[1].Addresses) {
					t.Fatalf("declared address changed: %v", out[1].Addresses)
				}
				if out[0].Addresses[0] == in[1].Addresses[0] {
					t.Fatalf("allocated a declared address %s twice", out[0].Addresses[0])
				}
			},
		},
		{
			name: "wildcard hosts get no address",
			in:   []registry.Service{svc("*.example.com")},
			check: func(t *testing.T, _, out []registry.Service) {
				if len(out[0].Addresses) != 0 {
					t.Fatalf("wildcard got %v", out[0].Addresses)
				}
			},
		},
		{
			name: "the input is not modified",
			in:   []registry.Service{svc("a.ns.svc.cluster.local")},
			check: func(t *testing.T, in, _ []registry.Service) {
				if len(in[0].Addresses) != 0 {
					t.Fatalf("input modified: %v", in[0].Addresses)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := registry.AllocateAddresses(tt.in)
			tt.check(t, tt.in, out)
		})
	}
}

func TestAllocateAddressesIsDeterministicAndUnique(t *testing.T) {
	var svcs []registry.Service
	for i := range 3000 {
		svcs = append(svcs, registry.Service{Hostname: fmt.Sprintf("svc%d.ns%d.svc.cluster.local", i, i%7)})
	}
	a := registry.AllocateAddresses(svcs)
	// The same services in another order: the same addresses.
	rev := make([]registry.Service, len(svcs))
	for i := range svcs {
		rev[len(svcs)-1-i] = svcs[i]
	}
	b := registry.AllocateAddresses(rev)
	seen := map[string]string{}
	for i, s := range a {
		if len(s.Addresses) != 1 {
			t.Fatalf("%s: %v", s.Hostname, s.Addresses)
		}
		if other, dup := seen[s.Addresses[0]]; dup {
			t.Fatalf("%s and %s both got %s", other, s.Hostname, s.Addresses[0])
		}
		seen[s.Addresses[0]] = s.Hostname
		if got := b[len(svcs)-1-i].Addresses[0]; got != s.Addresses[0] {
			t.Fatalf("%s: %s in one order, %s in the other", s.Hostname, s.Addresses[0], got)
		}
	}
	// Adding a service leaves the others' addresses alone (no collision
	// with them here).
	c := registry.AllocateAddresses(append(svcs[:len(svcs):len(svcs)], registry.Service{Hostname: "new.ns.svc.cluster.local"}))
	moved := 0
	for i := range svcs {
		if c[i].Addresses[0] != a[i].Addresses[0] {
			moved++
		}
	}
	if moved > 1 {
		t.Fatalf("adding one service moved %d others", moved)
	}
}
