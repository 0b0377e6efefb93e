package server_test

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/meshtest"
	"github.com/zmesh/zmesh/internal/registry"
)

// hijackEntry is a ServiceEntry in namespace web that expects its own
// identity at backend's proxy address (backendSpec): what a proxy's route
// table refuses, since one address cannot be two identities.
func hijackEntry() config.Resource {
	return config.Resource{
		Meta: config.Meta{Kind: config.KindServiceEntry, APIVersion: "networking.istio.io/v1", Name: "hijack", Namespace: "web", Source: "hijack.yaml#1"},
		Spec: &networking.ServiceEntry{
			Hosts:      []string{"hijack.example.com"},
			Location:   networking.ServiceEntry_MESH_INTERNAL,
			Resolution: networking.ServiceEntry_STATIC,
			Ports:      []*networking.ServicePort{{Number: 80, Name: "http", Protocol: "HTTP"}},
			Endpoints: []*networking.WorkloadEntry{{Address: "127.0.0.1", ServiceAccount: "stranger",
				Ports: map[string]uint32{"http": 16002}, Labels: map[string]string{registry.LabelTLSMode: "istio"}}},
		},
	}
}

// TestOneServiceEntryDoesNotFreezeTheMesh: a ServiceEntry naming another
// identity's address is left out alone and reported; the policy edit that
// follows (a revocation) still reaches every proxy.
func TestOneServiceEntryDoesNotFreezeTheMesh(t *testing.T) {
	ca := meshtest.NewCA(t, trustDomain)
	allow := allowFrom("api", "allow-frontend", "backend", "cluster.local/ns/web/sa/frontend")
	cp := startControlPlane(t, ca, "", config.NewSnapshot("1", []config.Resource{strictMesh(), allow}), time.Second)
	front := startProxy(t, ca, cp.addr, frontendSpec())
	back := startProxy(t, ca, cp.addr, backendSpec())
	for _, p := range []*testProxy{front, back} {
		eventually(t, 3*time.Second, "both services in view", func() bool {
			v := p.last()
			return v != nil && len(v.Services) == 2
		})
	}

	cp.srv.Update(config.NewSnapshot("2", []config.Resource{strictMesh(), allow, hijackEntry()}))
	// The revocation: backend's allow policy goes.
	cp.srv.Update(config.NewSnapshot("3", []config.Resource{strictMesh(), hijackEntry()}))
	eventually(t, 3*time.Second, "revocation applied by backend", func() bool {
		v := back.last()
		return len(v.AuthorizationPolicies) == 0
	})
	for _, p := range []*testProxy{front, back} {
		for _, svc := range p.last().Services {
			if svc.Hostname == "hijack.example.com" {
				t.Errorf("the conflicting ServiceEntry reached a proxy: %+v", svc)
			}
		}
	}
	for _, id := range []string{"web/frontend", "api/backend"} {
		eventually(t, 2*time.Second, id+" synced", func() bool {
			st, _ := statusOf(cp.srv, id)
			return st.Synced && st.LastNack == ""
		})
	}
	rej := cp.srv.Rejected()
	if len(rej) != 1 || rej[0].Kind != config.KindServiceEntry || rej[0].Key != "web/hijack" ||
		!strings.Contains(rej[0].Error(), "api/backend") {
		t.Fatalf("Rejected() = %v, want web/hijack naming api/backend", rej)
	}
	if st := cp.srv.Stats(); st.RejectedPushes != 0 || st.ProxiesNacking != 0 {
		t.Errorf("stats = %+v, want no NACK", st)
	}

	// Removing it clears the report.
	cp.srv.Update(config.NewSnapshot("4", []config.Resource{strictMesh()}))
	eventually(t, 2*time.Second, "rejection cleared", func() bool { return len(cp.srv.Rejected()) == 0 })
}

// TestNacksShowInStats: a proxy that refuses a push is counted once per
// refused view, and as NACKing until it accepts one.
func TestNacksShowInStats(t *testing.T) {
	ca := meshtest.NewCA(t, trustDomain)
	cp := startControlPlane(t, ca, "", config.NewSnapshot("1", []config.Resource{strictMesh()}), time.Second)
	p := startProxy(t, ca, cp.addr, frontendSpec())
	p.waitSynced(t)
	eventually(t, 2*time.Second, "synced", func() bool {
		st, _ := statusOf(cp.srv, "web/frontend")
		return st.Synced
	})
	p.setApplyErr("cannot compile")
	cp.srv.Update(config.NewSnapshot("2", []config.Resource{strictMesh(), allowFrom("web", "a", "frontend", "x")}))
	eventually(t, 2*time.Second, "NACK counted", func() bool {
		st := cp.srv.Stats()
		return st.RejectedPushes == 1 && st.ProxiesNacking == 1
	})
	p.setApplyErr("")
	cp.srv.Update(config.NewSnapshot("3", []config.Resource{strictMesh(), allowFrom("web", "b", "frontend", "x")}))
	eventually(t, 2*time.Second, "no proxy NACKing", func() bool { return cp.srv.Stats().ProxiesNacking == 0 })
	if got := cp.srv.Stats().RejectedPushes; got != 1 {
		t.Errorf("RejectedPushes = %d, want 1 (one refused view, NACKed per type)", got)
	}
}

// TestRegistrationAtAnotherIdentitysAddressIsRefused: a proxy announcing
// an address where another identity's proxy is registered is refused, so
// that it cannot make every view one the proxies refuse.
func TestRegistrationAtAnotherIdentitysAddressIsRefused(t *testing.T) {
	ca := meshtest.NewCA(t, trustDomain)
	cp := startControlPlane(t, ca, "", config.NewSnapshot("1", nil), time.Second)
	back := startProxy(t, ca, cp.addr, backendSpec())
	back.waitSynced(t)
	stranger := ca.Issue(t, "web", "stranger", time.Hour)
	err := rawStream(t, ca, cp.addr, &stranger, node("web/stranger", registry.Workload{Name: "stranger", Namespace: "web", ServiceAccount: "stranger",
		Address: backendSpec().address, Services: []string{"stranger"}}))
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "registered by api/backend") {
		t.Errorf("stream error = %v, want InvalidArgument naming api/backend", err)
	}
	if _, ok := cp.store.Workload("web/stranger"); ok {
		t.Error("the squatter was registered")
	}
}
