package registry_test

import (
	"testing"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/registry"
)

// FuzzAdmit feeds ServiceEntries and WorkloadEntries, as any namespace
// could write them, to Admit beside a registered workload: whatever they
// say, what Admit lets through passes Check (a proxy never refuses it),
// and the registered workload's service stays as registered.
func FuzzAdmit(f *testing.F) {
	f.Add([]byte(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: hijack, namespace: web}
spec:
  hosts: [hijack.example.com, Backend.api.svc.cluster.local.]
  resolution: STATIC
  ports: [{number: 80, name: http}]
  endpoints: [{address: 127.0.0.1, ports: {http: 15006}, serviceAccount: stranger, labels: {security.istio.io/tlsMode: istio}}]
`))
	f.Add([]byte(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: vms, namespace: web}
spec:
  hosts: [vm.example.com]
  subjectAltNames: [not-a-spiffe-id]
  ports: [{number: 80, name: http}]
  workloadSelector: {labels: {app: vm}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm1, namespace: web}
spec: {address: 10.0.0.1, labels: {app: vm, security.istio.io/tlsMode: istio}}
`))
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, _, err := config.Parse(data, "fuzz.yaml")
		if err != nil {
			return
		}
		var valid []config.Resource
		for _, r := range rs {
			if config.Validate(r) == nil {
				valid = append(valid, r)
			}
		}
		store := registry.NewStore("cluster.local")
		if err := store.Upsert(registry.Workload{Name: "backend", Namespace: "api", Identity: "spiffe://cluster.local/ns/api/sa/backend",
			Address: "127.0.0.1:15006", HasProxy: true, Services: []string{"backend"}}); err != nil {
			t.Fatal(err)
		}
		snap := config.NewSnapshot("1", valid)
		a := registry.Admit(store.Services(), registry.Declarations(snap, "cluster.local"), nil)
		if err := registry.Check(a.Services); err != nil {
			t.Fatalf("Admit let through what a proxy refuses: %v", err)
		}
		for _, s := range a.Services {
			for _, ep := range s.Endpoints {
				if ep.Address == "127.0.0.1:15006" && ep.HasProxy && ep.Identity != "spiffe://cluster.local/ns/api/sa/backend" {
					t.Fatalf("backend's address now expected as %s", ep.Identity)
				}
			}
		}
		if again := registry.Admit(store.Services(), registry.Declarations(snap, "cluster.local"), a); len(again.Rejected) != len(a.Rejected) {
			t.Fatalf("admitting the same input again rejected %d, then %d", len(a.Rejected), len(again.Rejected))
		}
	})
}
