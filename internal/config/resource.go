package config

import (
	"sort"

	"google.golang.org/protobuf/proto"
)

// Kind is an Istio resource kind, as written in a resource's `kind` field.
type Kind string

// Kinds zmesh understands. Others are skipped with a warning.
const (
	KindPeerAuthentication    Kind = "PeerAuthentication"
	KindAuthorizationPolicy   Kind = "AuthorizationPolicy"
	KindRequestAuthentication Kind = "RequestAuthentication"
	KindServiceEntry          Kind = "ServiceEntry"
	KindWorkloadEntry         Kind = "WorkloadEntry"
	KindDestinationRule       Kind = "DestinationRule"
	KindSidecar               Kind = "Sidecar"
)

// Meta is the part of a resource's Kubernetes-style metadata that policy
// semantics depend on.
type Meta struct {
	Kind        Kind
	APIVersion  string // e.g. security.istio.io/v1
	Name        string
	Namespace   string // never empty after parsing: defaults to "default"
	Labels      map[string]string
	Annotations map[string]string
	Source      string // where it came from (file path and document index), for messages
}

// Key returns "NAMESPACE/NAME", the form used in logs, decisions and xDS.
func (m Meta) Key() string { return m.Namespace + "/" + m.Name }

// Resource is one Istio resource: its metadata and its typed spec.
//
// Spec is the istio.io/api message for Kind:
//   - PeerAuthentication: *securityv1beta1.PeerAuthentication
//   - AuthorizationPolicy: *securityv1beta1.AuthorizationPolicy
//   - RequestAuthentication: *securityv1beta1.RequestAuthentication
//   - ServiceEntry: *networkingv1alpha3.ServiceEntry
//   - WorkloadEntry: *networkingv1alpha3.WorkloadEntry
//   - DestinationRule: *networkingv1alpha3.DestinationRule
//   - VirtualService: *networkingv1alpha3.VirtualService
//   - Sidecar: *networkingv1alpha3.Sidecar
//   - Gateway: *networkingv1alpha3.Gateway
//
// (security.istio.io/v1 types are aliases of v1beta1, so both versions
// parse into the same Go type.) A Resource is immutable once in a Snapshot.
type Resource struct {
	Meta
	Spec proto.Message
}

// Snapshot is an immutable, versioned set of resources: what the control
// plane had accepted at one moment. The zero value is an empty snapshot.
type Snapshot struct {
	Version   string
	resources map[Kind][]Resource
}

// NewSnapshot returns a snapshot holding rs, sorted by kind, namespace and
// name so that iteration order (and so every derived output) is stable.
func NewSnapshot(version string, rs []Resource) *Snapshot {
	s := &Snapshot{Version: version, resources: map[Kind][]Resource{}}
	for _, r := range rs {
		s.resources[r.Kind] = append(s.resources[r.Kind], r)
	}
	for _, list := range s.resources {
		sort.Slice(list, func(i, j int) bool {
			if list[i].Namespace != list[j].Namespace {
				return list[i].Namespace < list[j].Namespace
			}
			return list[i].Name < list[j].Name
		})
	}
	return s
}

// List returns the resources of one kind. The caller must not modify them.
func (s *Snapshot) List(k Kind) []Resource {
	if s == nil {
		return nil
	}
	return s.resources[k]
}

// All returns every resource, grouped by kind in a stable order.
func (s *Snapshot) All() []Resource {
	if s == nil {
		return nil
	}
	kinds := make([]string, 0, len(s.resources))
	for k := range s.resources {
		kinds = append(kinds, string(k))
	}
	sort.Strings(kinds)
	var out []Resource
	for _, k := range kinds {
		out = append(out, s.resources[Kind(k)]...)
	}
	return out
}
