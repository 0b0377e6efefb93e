package registry_test

import (
	"reflect"
	"testing"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/registry"
)

func TestFromConfig(t *testing.T) {
	rs := []config.Resource{
		{Meta: config.Meta{Kind: config.KindServiceEntry, Name: "db", Namespace: "data"}, Spec: &networking.ServiceEntry{
			Hosts:      []string{"db.internal"},
			Location:   networking.ServiceEntry_MESH_INTERNAL,
			Resolution: networking.ServiceEntry_STATIC,
			Ports:      []*networking.ServicePort{{Number: 5432, Name: "tcp", Protocol: "TCP"}},
			Endpoints: []*networking.WorkloadEntry{
				{Address: "10.0.0.1"},
				{Address: "10.0.0.2", Ports: map[string]uint32{"tcp": 15006}, ServiceAccount: "db", Labels: map[string]string{registry.LabelTLSMode: "istio"}},
			},
			WorkloadSelector: &networking.WorkloadSelector{Labels: map[string]string{"app": "db"}},
		}},
		{Meta: config.Meta{Kind: config.KindWorkloadEntry, Name: "vm1", Namespace: "data"}, Spec: &networking.WorkloadEntry{
			Address: "10.0.0.3", Labels: map[string]string{"app": "db", registry.LabelTLSMode: "istio"}, ServiceAccount: "vm",
		}},
		{Meta: config.Meta{Kind: config.KindWorkloadEntry, Name: "vm2", Namespace: "other"}, Spec: &networking.WorkloadEntry{
			Address: "10.0.0.4", Labels: map[string]string{"app": "db"},
		}},
		{Meta: config.Meta{Kind: config.KindServiceEntry, Name: "google", Namespace: "egress"}, Spec: &networking.ServiceEntry{
			Hosts:      []string{"www.google.com", "google.com"},
			Location:   networking.ServiceEntry_MESH_EXTERNAL,
			Resolution: networking.ServiceEntry_DNS,
			Ports:      []*networking.ServicePort{{Number: 443, Name: "https", Protocol: "TLS"}},
		}},
	}
	got := registry.FromConfig(config.NewSnapshot("1", rs), "cluster.local")
	want := []registry.Service{
		{Hostname: "db.internal", Namespace: "data", Ports: []registry.Port{{Number: 5432, Name: "tcp", Protocol: "TCP"}}, Endpoints: []registry.Endpoint{
			{Address: "10.0.0.1:5432", Workload: "data/db#0"},
			{Address: "10.0.0.2:15006", Identity: "spiffe://cluster.local/ns/data/sa/db", HasProxy: true, Workload: "data/db#1", Labels: map[string]string{registry.LabelTLSMode: "istio"}},
			{Address: "10.0.0.3:5432", Identity: "spiffe://cluster.local/ns/data/sa/vm", HasProxy: true, Workload: "data/vm1", Labels: map[string]string{"app": "db", registry.LabelTLSMode: "istio"}},
		}},
		{Hostname: "google.com", Namespace: "egress", Ports: []registry.Port{{Number: 443, Name: "https", Protocol: "TLS"}}, Endpoints: []registry.Endpoint{{Address: "google.com:443", Workload: "egress/google"}}},
		{Hostname: "www.google.com", Namespace: "egress", Ports: []registry.Port{{Number: 443, Name: "https", Protocol: "TLS"}}, Endpoints: []registry.Endpoint{{Address: "www.google.com:443", Workload: "egress/google"}}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("FromConfig =\n%+v\nwant\n%+v", got, want)
	}
}
