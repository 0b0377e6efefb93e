package proxy

import (
	"testing"

	"github.com/zmesh/zmesh/internal/registry"
)

func TestRouteLookup(t *testing.T) {
	services := []registry.Service{
		{Hostname: "backend.api.svc.cluster.local", Namespace: "api"},
		{Hostname: "frontend.web.svc.cluster.local", Namespace: "web"},
		{Hostname: "api.example.com", Namespace: "web"},
		// An exact host that collides with a short form wins over it.
		{Hostname: "backend.api", Namespace: "other"},
	}
	rt, err := buildRoutes(services, "web", "cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]string{
		"backend.api.svc.cluster.local":       "backend.api.svc.cluster.local",
		"backend.api.svc.cluster.local:8000":  "backend.api.svc.cluster.local",
		"Backend.API.svc.cluster.local.":      "backend.api.svc.cluster.local",
		"backend.api.svc":                     "backend.api.svc.cluster.local",
		"backend.api":                         "backend.api",
		"frontend":                            "frontend.web.svc.cluster.local",
		"frontend:80":                         "frontend.web.svc.cluster.local",
		"frontend.web":                        "frontend.web.svc.cluster.local",
		"backend":                             "", // another namespace: no short name
		"api.example.com":                     "api.example.com",
		"api":                                 "",
		"[::1]:80":                            "",
		"":                                    "",
		"backend.api.svc.cluster.local.evil.": "",
	} {
		got := ""
		if r := rt.lookup(host); r != nil {
			got = r.hostname
		}
		if got != want {
			t.Errorf("lookup(%q) = %q, want %q", host, got, want)
		}
	}
}

func TestBuildRoutesRejects(t *testing.T) {
	for name, svcs := range map[string][]registry.Service{
		"bad identity": {{Hostname: "a.b.svc.cluster.local", Endpoints: []registry.Endpoint{{Address: "1.2.3.4:1", HasProxy: true, Identity: "not a spiffe id"}}}},
		"duplicate":    {{Hostname: "a.b.svc.cluster.local"}, {Hostname: "A.b.svc.cluster.local"}},
		"two identities at one address": {
			{Hostname: "a.b.svc.cluster.local", Endpoints: []registry.Endpoint{{Address: "1.2.3.4:1", HasProxy: true, Identity: "spiffe://cluster.local/ns/b/sa/a"}}},
			{Hostname: "c.b.svc.cluster.local", Endpoints: []registry.Endpoint{{Address: "1.2.3.4:1", HasProxy: true, Identity: "spiffe://cluster.local/ns/b/sa/c"}}},
		},
	} {
		if _, err := buildRoutes(svcs, "b", "cluster.local"); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestRoundRobin(t *testing.T) {
	r := &route{endpoints: []endpoint{{addr: "a"}, {addr: "b"}, {addr: "c"}}}
	seen := map[string]int{}
	for range 30 {
		seen[r.pick().addr]++
	}
	if seen["a"] != 10 || seen["b"] != 10 || seen["c"] != 10 {
		t.Errorf("round robin: %v", seen)
	}
}

// FuzzRouteLookup feeds request hosts (attacker-controlled Host headers)
// to the route table: it must never panic, and whatever it resolves must
// be a known service.
func FuzzRouteLookup(f *testing.F) {
	for _, s := range []string{"backend", "backend.api:80", "[::1]:80", "BACKEND.api.svc.cluster.local.", ":", "[", "a:b:c"} {
		f.Add(s)
	}
	rt, err := buildRoutes([]registry.Service{{Hostname: "backend.api.svc.cluster.local", Namespace: "api"}}, "api", "cluster.local")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, host string) {
		if r := rt.lookup(host); r != nil && r.hostname != "backend.api.svc.cluster.local" {
			t.Fatalf("%q resolved to %q", host, r.hostname)
		}
		stripPort(host)
		withDefaultPort(host, "80")
	})
}
