package registry_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/zmesh/zmesh/internal/registry"
)

func TestUpsertRefusesWhatAWorkloadMayNotClaim(t *testing.T) {
	ok := registry.Workload{Name: "backend", Namespace: "api", Address: "127.0.0.1:15006", Services: []string{"backend"}}
	tests := []struct {
		name    string
		mutate  func(*registry.Workload)
		wantErr string
	}{
		{name: "a plain registration is accepted", mutate: func(*registry.Workload) {}},
		{name: "a hostname in another namespace", mutate: func(w *registry.Workload) { w.Services = []string{"backend.other"} }, wantErr: "own namespace"},
		{name: "a fully qualified hostname", mutate: func(w *registry.Workload) { w.Services = []string{"backend.api.svc.cluster.local"} }, wantErr: "own namespace"},
		{name: "an uppercase service name", mutate: func(w *registry.Workload) { w.Services = []string{"Backend"} }, wantErr: "DNS label"},
		{name: "no namespace", mutate: func(w *registry.Workload) { w.Namespace = "" }, wantErr: "namespace"},
		{name: "a slash in the name", mutate: func(w *registry.Workload) { w.Name = "a/b" }, wantErr: "name"},
		{name: "services without an address", mutate: func(w *registry.Workload) { w.Address = "" }, wantErr: "no address"},
		{name: "an address without a port", mutate: func(w *registry.Workload) { w.Address = "127.0.0.1" }, wantErr: "host:port"},
		{name: "too many services", mutate: func(w *registry.Workload) { w.Services = make([]string, 65) }, wantErr: "at most"},
		{name: "an admin address is accepted", mutate: func(w *registry.Workload) { w.AdminAddress = "127.0.0.1:15020" }},
		{name: "an admin address without a port", mutate: func(w *registry.Workload) { w.AdminAddress = "127.0.0.1" }, wantErr: "admin address"},
		{name: "an admin address with port 0", mutate: func(w *registry.Workload) { w.AdminAddress = "127.0.0.1:0" }, wantErr: "admin address"},
		{name: "an admin address with a path", mutate: func(w *registry.Workload) { w.AdminAddress = "127.0.0.1:80/x" }, wantErr: "admin address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := ok
			tt.mutate(&w)
			err := registry.NewStore("").Upsert(w)
			if tt.wantErr == "" && err != nil {
				t.Fatalf("Upsert: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Upsert error = %v, want one mentioning %q", err, tt.wantErr)
			}
		})
	}
}

func TestServicesAreSortedAndCarryIdentity(t *testing.T) {
	s := registry.NewStore("cluster.local")
	for _, w := range []registry.Workload{
		{Name: "b2", Namespace: "api", Identity: "spiffe://cluster.local/ns/api/sa/b", Address: "127.0.0.1:2", HasProxy: true, Services: []string{"backend"}},
		{Name: "b1", Namespace: "api", Identity: "spiffe://cluster.local/ns/api/sa/b", Address: "127.0.0.1:1", HasProxy: true, Services: []string{"backend"}, Labels: map[string]string{"app": "backend"}},
		{Name: "a", Namespace: "web", Identity: "spiffe://cluster.local/ns/web/sa/a", Address: "127.0.0.1:3", HasProxy: true, Services: []string{"alpha", "zeta"}},
		{Name: "idle", Namespace: "web"},
	} {
		if err := s.Upsert(w); err != nil {
			t.Fatal(err)
		}
	}
	got := s.Services()
	var hosts []string
	for _, svc := range got {
		hosts = append(hosts, svc.Hostname)
	}
	if want := []string{"alpha.web.svc.cluster.local", "backend.api.svc.cluster.local", "zeta.web.svc.cluster.local"}; !reflect.DeepEqual(hosts, want) {
		t.Fatalf("hosts = %v, want %v", hosts, want)
	}
	backend := got[1]
	want := []registry.Endpoint{
		{Address: "127.0.0.1:1", Identity: "spiffe://cluster.local/ns/api/sa/b", HasProxy: true, Workload: "api/b1", Labels: map[string]string{"app": "backend", registry.LabelTLSMode: "istio"}},
		{Address: "127.0.0.1:2", Identity: "spiffe://cluster.local/ns/api/sa/b", HasProxy: true, Workload: "api/b2", Labels: map[string]string{registry.LabelTLSMode: "istio"}},
	}
	if backend.Namespace != "api" || !reflect.DeepEqual(backend.Endpoints, want) {
		t.Errorf("backend = %+v, want endpoints %+v", backend, want)
	}
	if !reflect.DeepEqual(s.Services(), got) {
		t.Error("Services is not stable across calls")
	}
}

func TestChangedFiresOnRealChangesOnly(t *testing.T) {
	s := registry.NewStore("")
	w := registry.Workload{Name: "a", Namespace: "web", Address: "127.0.0.1:1", Services: []string{"a"}}
	ch := s.Changed()
	if err := s.Upsert(w); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	default:
		t.Fatal("Upsert did not signal a change")
	}
	ch = s.Changed()
	_ = s.Upsert(w)
	s.Remove("web/missing")
	select {
	case <-ch:
		t.Fatal("a no-op signalled a change")
	default:
	}
	// A proxy that comes back with another admin port is a change: the web
	// view must read the new one.
	w.AdminAddress = "127.0.0.1:2"
	ch = s.Changed()
	if err := s.Upsert(w); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	default:
		t.Fatal("a new admin address did not signal a change")
	}
	ch = s.Changed()
	s.Remove("web/a")
	select {
	case <-ch:
	default:
		t.Fatal("Remove did not signal a change")
	}
	if len(s.Services()) != 0 {
		t.Error("removed workload still serves")
	}
}

func TestMergeJoinsServicesByHostname(t *testing.T) {
	a := []registry.Service{{Hostname: "x.ns.svc.cluster.local", Namespace: "ns", Endpoints: []registry.Endpoint{{Address: "127.0.0.1:2", Workload: "ns/b"}}}}
	b := []registry.Service{
		{Hostname: "x.ns.svc.cluster.local", Namespace: "ns", Endpoints: []registry.Endpoint{{Address: "127.0.0.1:1", Workload: "ns/a"}, {Address: "127.0.0.1:2", Workload: "ns/b"}}},
		{Hostname: "a.example.com", Namespace: "ext"},
	}
	got := registry.Merge(a, b)
	if len(got) != 2 || got[0].Hostname != "a.example.com" || len(got[1].Endpoints) != 2 || got[1].Endpoints[0].Address != "127.0.0.1:1" {
		t.Errorf("Merge = %+v", got)
	}
}

func TestStorePlatformServicesMergeWithRegistrations(t *testing.T) {
	s := registry.NewStore("cluster.local")
	changed := s.Changed()
	s.SetPlatformServices([]registry.Service{{
		Hostname: "backend.api.svc.cluster.local", Namespace: "api",
		Addresses: []string{"10.96.0.10"}, Ports: []registry.Port{{Number: 80, Name: "http", TargetPort: 8080}},
		Endpoints: []registry.Endpoint{{Address: "10.1.0.5:8080", Identity: "spiffe://cluster.local/ns/api/sa/backend", HasProxy: true, Workload: "api/backend-0"}},
	}})
	select {
	case <-changed:
	default:
		t.Fatal("SetPlatformServices did not notify watchers")
	}
	if err := s.Upsert(registry.Workload{Name: "backend", Namespace: "api", Address: "127.0.0.1:4000", Identity: "spiffe://cluster.local/ns/api/sa/backend", HasProxy: true, Services: []string{"backend"}}); err != nil {
		t.Fatal(err)
	}
	svcs := s.Services()
	if len(svcs) != 1 {
		t.Fatalf("services = %+v, want one merged service", svcs)
	}
	got := svcs[0]
	if len(got.Addresses) != 1 || got.Addresses[0] != "10.96.0.10" || len(got.Ports) != 1 || got.Ports[0].TargetPort != 8080 {
		t.Errorf("merged service lost the platform's addresses or ports: %+v", got)
	}
	if len(got.Endpoints) != 2 || got.Endpoints[0].Address != "10.1.0.5:8080" || got.Endpoints[1].Address != "127.0.0.1:4000" {
		t.Errorf("endpoints = %+v, want the pod's and the registered proxy's", got.Endpoints)
	}
	s.SetPlatformServices(nil)
	if svcs := s.Services(); len(svcs) != 1 || len(svcs[0].Endpoints) != 1 || len(svcs[0].Addresses) != 0 {
		t.Errorf("after clearing the platform: %+v", svcs)
	}
}
