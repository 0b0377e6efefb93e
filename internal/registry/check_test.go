package registry_test

import (
	"strings"
	"testing"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/registry"
)

func meshEndpoint(addr, id, workload string) registry.Endpoint {
	return registry.Endpoint{Address: addr, Identity: id, HasProxy: true, Workload: workload}
}

func TestCheck(t *testing.T) {
	const (
		backendID = "spiffe://cluster.local/ns/api/sa/backend"
		otherID   = "spiffe://cluster.local/ns/web/sa/other"
	)
	backend := registry.Service{Hostname: "backend.api.svc.cluster.local", Namespace: "api",
		Endpoints: []registry.Endpoint{meshEndpoint("10.0.0.1:15006", backendID, "api/backend")}}
	tests := []struct {
		name     string
		services []registry.Service
		wantErr  string
	}{
		{name: "nothing is fine", services: nil},
		{name: "one service", services: []registry.Service{backend}},
		{name: "one address in two services as one identity", services: []registry.Service{backend,
			{Hostname: "b.example.com", Endpoints: []registry.Endpoint{meshEndpoint("10.0.0.1:15006", backendID, "api/b")}}}},
		{name: "one address without a proxy in two services", services: []registry.Service{
			{Hostname: "a.example.com", Endpoints: []registry.Endpoint{{Address: "10.0.0.9:80"}}},
			{Hostname: "b.example.com", Endpoints: []registry.Endpoint{{Address: "10.0.0.9:80"}}}}},
		{name: "an address expected as two identities", services: []registry.Service{backend,
			{Hostname: "evil.web.svc.cluster.local", Endpoints: []registry.Endpoint{meshEndpoint("10.0.0.1:15006", otherID, "web/evil#0")}}},
			wantErr: "endpoint 10.0.0.1:15006 expected as both " + backendID + " (api/backend) and " + otherID + " (web/evil#0)"},
		{name: "an identity that is not a SPIFFE ID", services: []registry.Service{
			{Hostname: "a.example.com", Endpoints: []registry.Endpoint{meshEndpoint("10.0.0.2:1", "not a spiffe id", "web/a#0")}}},
			wantErr: `identity "not a spiffe id"`},
		{name: "an empty hostname", services: []registry.Service{{Hostname: "."}}, wantErr: "empty hostname"},
		{name: "a hostname listed twice", services: []registry.Service{backend, backend}, wantErr: "listed twice"},
		{name: "hostnames that differ only in case", services: []registry.Service{backend, {Hostname: "Backend.api.svc.cluster.local"}}, wantErr: "listed twice"},
		{name: "hostnames that differ only in a trailing dot", services: []registry.Service{backend, {Hostname: "backend.api.svc.cluster.local."}}, wantErr: "listed twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := registry.Check(tt.services)
			if tt.wantErr == "" && err != nil {
				t.Fatalf("Check: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Check error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestTableAddLeavesTheTableAloneOnError(t *testing.T) {
	var tb registry.Table
	id := func(sa string) string { return "spiffe://cluster.local/ns/web/sa/" + sa }
	if err := tb.Add([]registry.Service{{Hostname: "a.web.svc.cluster.local", Endpoints: []registry.Endpoint{meshEndpoint("10.0.0.1:1", id("a"), "web/a")}}}); err != nil {
		t.Fatal(err)
	}
	// A group whose second service conflicts is refused whole: its first
	// service's address must not stay claimed.
	bad := []registry.Service{
		{Hostname: "b.web.svc.cluster.local", Endpoints: []registry.Endpoint{meshEndpoint("10.0.0.2:1", id("b"), "web/b")}},
		{Hostname: "c.web.svc.cluster.local", Endpoints: []registry.Endpoint{meshEndpoint("10.0.0.1:1", id("c"), "web/c")}},
	}
	if err := tb.Add(bad); err == nil {
		t.Fatal("a conflicting group was added")
	}
	if err := tb.Add([]registry.Service{{Hostname: "d.web.svc.cluster.local", Endpoints: []registry.Endpoint{meshEndpoint("10.0.0.2:1", id("d"), "web/d")}}}); err != nil {
		t.Errorf("the refused group left its address claimed: %v", err)
	}
	// The same hostname joins, as Merge joins it; another spelling of it
	// does not.
	if err := tb.Add([]registry.Service{{Hostname: "a.web.svc.cluster.local"}}); err != nil {
		t.Errorf("same hostname again: %v", err)
	}
	if err := tb.Add([]registry.Service{{Hostname: "A.web.svc.cluster.local"}}); err == nil {
		t.Error("another spelling of a hostname in the table was added")
	}
}

func serviceEntry(ns, name, addr, sa string, hosts ...string) config.Resource {
	return config.Resource{
		Meta: config.Meta{Kind: config.KindServiceEntry, Name: name, Namespace: ns, Source: name + ".yaml#1"},
		Spec: &networking.ServiceEntry{
			Hosts:      hosts,
			Location:   networking.ServiceEntry_MESH_INTERNAL,
			Resolution: networking.ServiceEntry_STATIC,
			Ports:      []*networking.ServicePort{{Number: 80, Name: "http", Protocol: "HTTP"}},
			Endpoints: []*networking.WorkloadEntry{{Address: addr, ServiceAccount: sa,
				Ports: map[string]uint32{"http": 15006}, Labels: map[string]string{registry.LabelTLSMode: "istio"}}},
		},
	}
}

func TestAdmitLeavesOutOnlyTheConflictingServiceEntry(t *testing.T) {
	store := registry.NewStore("cluster.local")
	if err := store.Upsert(registry.Workload{Name: "backend", Namespace: "api", Identity: "spiffe://cluster.local/ns/api/sa/backend",
		Address: "127.0.0.1:15006", HasProxy: true, Services: []string{"backend"}}); err != nil {
		t.Fatal(err)
	}
	snap := config.NewSnapshot("1", []config.Resource{
		// web/hijack expects its own identity at backend's address.
		serviceEntry("web", "hijack", "127.0.0.1", "stranger", "hijack.example.com"),
		serviceEntry("web", "vm", "10.0.0.7", "vm", "vm.example.com", "VM.example.com."),
	})
	a := registry.Admit(store.Services(), registry.Declarations(snap, "cluster.local"), nil)
	var hosts []string
	for _, s := range a.Services {
		hosts = append(hosts, s.Hostname)
	}
	if strings.Join(hosts, ",") != "backend.api.svc.cluster.local,vm.example.com" {
		t.Errorf("admitted hosts = %v, want backend's and vm's (one name for both spellings)", hosts)
	}
	if err := registry.Check(a.Services); err != nil {
		t.Errorf("admitted services fail Check: %v", err)
	}
	if len(a.Rejected) != 1 {
		t.Fatalf("rejected = %v, want web/hijack alone", a.Rejected)
	}
	r := a.Rejected[0]
	if r.Kind != config.KindServiceEntry || r.Key != "web/hijack" || r.Source != "hijack.yaml#1" ||
		!strings.Contains(r.Error(), "spiffe://cluster.local/ns/api/sa/backend (api/backend)") {
		t.Errorf("rejection = %+v (%v)", r, r)
	}
}

func TestAdmitKeepsTheServiceEntryInForceOverANewConflictingOne(t *testing.T) {
	old := serviceEntry("zz", "db", "10.0.0.5", "db", "db.example.com")
	newer := serviceEntry("aa", "squat", "10.0.0.5", "squatter", "squat.example.com")
	first := registry.Admit(nil, registry.Declarations(config.NewSnapshot("1", []config.Resource{old}), "cluster.local"), nil)
	if len(first.Rejected) != 0 {
		t.Fatalf("rejected %v", first.Rejected)
	}
	both := registry.Declarations(config.NewSnapshot("2", []config.Resource{old, newer}), "cluster.local")
	second := registry.Admit(nil, both, first)
	if len(second.Rejected) != 1 || second.Rejected[0].Key != "aa/squat" {
		t.Errorf("with zz/db in force, rejected = %v, want aa/squat", second.Rejected)
	}
	// Without history, the order is by namespace and name.
	fresh := registry.Admit(nil, both, nil)
	if len(fresh.Rejected) != 1 || fresh.Rejected[0].Key != "zz/db" {
		t.Errorf("from scratch, rejected = %v, want zz/db", fresh.Rejected)
	}
}

func TestUpsertRefusesAnAddressHeldByAnotherIdentity(t *testing.T) {
	s := registry.NewStore("")
	backend := registry.Workload{Name: "backend", Namespace: "api", Identity: "spiffe://cluster.local/ns/api/sa/backend", Address: "127.0.0.1:15006", HasProxy: true}
	if err := s.Upsert(backend); err != nil {
		t.Fatal(err)
	}
	squatter := registry.Workload{Name: "squatter", Namespace: "web", Identity: "spiffe://cluster.local/ns/web/sa/squatter", Address: "127.0.0.1:15006", HasProxy: true}
	if err := s.Upsert(squatter); err == nil || !strings.Contains(err.Error(), "registered by api/backend") {
		t.Fatalf("Upsert of another identity at backend's address: %v", err)
	}
	replica := backend
	replica.Name = "backend-2"
	if err := s.Upsert(replica); err != nil {
		t.Errorf("same identity at the same address: %v", err)
	}
	moved := backend
	moved.Address = "127.0.0.1:15007"
	if err := s.Upsert(moved); err != nil {
		t.Fatalf("backend moving: %v", err)
	}
	s.Remove("api/backend-2")
	if err := s.Upsert(squatter); err != nil {
		t.Errorf("the freed address: %v", err)
	}
	if err := registry.Check(s.Services()); err != nil {
		t.Errorf("registered services fail Check: %v", err)
	}
}
