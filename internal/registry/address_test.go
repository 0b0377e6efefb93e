package registry_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/zmesh/zmesh/internal/registry"
)

// TestAddressConflicts: a proxy's address is held by its identity for as
// long as a workload with a proxy is registered there, and freed when the
// last one leaves, moves, or re-registers without a proxy.
func TestAddressConflicts(t *testing.T) {
	const addr = "10.0.0.1:15006"
	wl := func(ns, name, sa string, proxy bool, address string) registry.Workload {
		return registry.Workload{Name: name, Namespace: ns, Identity: "spiffe://cluster.local/ns/" + ns + "/sa/" + sa, Address: address, HasProxy: proxy}
	}
	type op struct {
		upsert  registry.Workload
		remove  string // key; instead of upsert
		wantErr string
	}
	tests := []struct {
		name string
		ops  []op
	}{
		{name: "another identity at a held address is refused", ops: []op{
			{upsert: wl("api", "a", "a", true, addr)},
			{upsert: wl("web", "b", "b", true, addr), wantErr: "address 10.0.0.1:15006 is registered by api/a"},
		}},
		{name: "the same identity may share the address", ops: []op{
			{upsert: wl("api", "a", "a", true, addr)},
			{upsert: wl("api", "a2", "a", true, addr)},
		}},
		{name: "the address is held until the last holder goes", ops: []op{
			{upsert: wl("api", "a", "a", true, addr)},
			{upsert: wl("api", "a2", "a", true, addr)},
			{remove: "api/a"},
			{upsert: wl("web", "b", "b", true, addr), wantErr: "registered by api/a2"},
			{remove: "api/a2"},
			{upsert: wl("web", "b", "b", true, addr)},
		}},
		{name: "a holder that moves frees its old address", ops: []op{
			{upsert: wl("api", "a", "a", true, addr)},
			{upsert: wl("api", "a", "a", true, "10.0.0.2:15006")},
			{upsert: wl("web", "b", "b", true, addr)},
			{upsert: wl("web", "c", "c", true, "10.0.0.2:15006"), wantErr: "registered by api/a"},
		}},
		{name: "a holder that re-registers without a proxy frees the address", ops: []op{
			{upsert: wl("api", "a", "a", true, addr)},
			{upsert: wl("api", "a", "a", false, addr)},
			{upsert: wl("web", "b", "b", true, addr)},
		}},
		{name: "workloads without a proxy hold nothing and are not refused", ops: []op{
			{upsert: wl("api", "a", "a", false, addr)},
			{upsert: wl("web", "b", "b", true, addr)},
			{upsert: wl("ops", "c", "c", false, addr)},
		}},
		{name: "a workload may change its own identity at its address", ops: []op{
			{upsert: wl("api", "a", "a", true, addr)},
			{upsert: wl("api", "a", "other", true, addr)},
			{upsert: wl("web", "b", "a", true, addr), wantErr: "registered by api/a as spiffe://cluster.local/ns/api/sa/other"},
		}},
		{name: "a refused registration leaves the store as it was", ops: []op{
			{upsert: wl("api", "a", "a", true, addr)},
			{upsert: wl("web", "b", "b", true, "10.0.0.2:15006")},
			{upsert: wl("web", "b", "b", true, addr), wantErr: "registered by api/a"},
			{upsert: wl("ops", "c", "c", true, "10.0.0.2:15006"), wantErr: "registered by web/b"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := registry.NewStore("")
			for i, o := range tt.ops {
				if o.remove != "" {
					s.Remove(o.remove)
					continue
				}
				err := s.Upsert(o.upsert)
				if o.wantErr == "" && err != nil {
					t.Fatalf("op %d: Upsert(%s): %v", i, o.upsert.Key(), err)
				}
				if o.wantErr != "" && (err == nil || !strings.Contains(err.Error(), o.wantErr)) {
					t.Fatalf("op %d: Upsert(%s) = %v, want an error with %q", i, o.upsert.Key(), err, o.wantErr)
				}
			}
		})
	}
}

// TestAddressIndexAgreesWithAScan drives a store with random
// registrations, moves and removals and checks each outcome against the
// rule applied by scanning every registered workload.
func TestAddressIndexAgreesWithAScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	s := registry.NewStore("")
	for i := range 20000 {
		key := fmt.Sprintf("w%d", rng.IntN(40))
		if rng.IntN(5) == 0 {
			s.Remove("ns/" + key)
			continue
		}
		w := registry.Workload{Name: key, Namespace: "ns", Identity: fmt.Sprintf("id-%d", rng.IntN(3)),
			Address: fmt.Sprintf("10.0.0.%d:80", rng.IntN(8)), HasProxy: rng.IntN(4) != 0}
		var conflict bool
		if w.HasProxy {
			for _, o := range s.Workloads() {
				conflict = conflict || (o.Key() != w.Key() && o.HasProxy && o.Address == w.Address && o.Identity != w.Identity)
			}
		}
		if err := s.Upsert(w); (err != nil) != conflict {
			t.Fatalf("op %d: Upsert(%+v) = %v; a scan finds a conflict: %t", i, w, err, conflict)
		}
	}
}

// TestConcurrentClaimsOfOneAddress: of many identities racing for one
// address, exactly one holds it (run with -race).
func TestConcurrentClaimsOfOneAddress(t *testing.T) {
	s := registry.NewStore("")
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		won []string
	)
	for i := range 32 {
		wg.Go(func() {
			for j := range 4 { // replicas of identity i
				w := registry.Workload{Name: fmt.Sprintf("w%d-%d", i, j), Namespace: "ns", Identity: fmt.Sprintf("id-%d", i), Address: "10.0.0.1:80", HasProxy: true}
				if s.Upsert(w) == nil {
					mu.Lock()
					won = append(won, w.Identity)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	for _, id := range won {
		if id != won[0] {
			t.Fatalf("identities holding the address: %v", won)
		}
	}
	if len(won) == 0 || len(s.Workloads()) != len(won) {
		t.Fatalf("%d registrations accepted, %d in the store", len(won), len(s.Workloads()))
	}
}

// BenchmarkUpsert10000 is a reconnect wave's registrations: 10,000
// proxies, each at its own address, registering again one by one.
func BenchmarkUpsert10000(b *testing.B) {
	b.ReportAllocs()
	for range b.N {
		s := registry.NewStore("")
		for i := range 10000 {
			w := registry.Workload{Name: fmt.Sprintf("w%d", i), Namespace: "ns", Identity: fmt.Sprintf("id-%d", i),
				Address: fmt.Sprintf("10.%d.%d.%d:15006", i>>16, (i>>8)&0xff, i&0xff), HasProxy: true}
			if err := s.Upsert(w); err != nil {
				b.Fatal(err)
			}
		}
	}
}
