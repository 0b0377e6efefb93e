package xds

import (
	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/registry"
)

// Mesh holds the mesh-wide settings a proxy needs to interpret its policies.
type Mesh struct {
	TrustDomain        string // e.g. cluster.local
	TrustDomainAliases []string
	RootNamespace      string // e.g. istio-system
	DNSDomain          string // e.g. cluster.local: services are NAME.NS.svc.DNSDomain
}

// Proxy is what the control plane knows of a connected proxy: the workload
// it serves. Identity fields come from the proxy's authenticated mesh
// certificate; Labels and Services from its registration.
type Proxy struct {
	ID string // NAMESPACE/NAME, the xDS node ID
	registry.Workload
}

// View is everything one proxy needs, derived from a config Snapshot and
// the registry by Build: only the resources that select this proxy's
// workload, and the services it may call. Views are immutable.
type View struct {
	Version string
	Mesh    Mesh
	// PeerAuthentications that may apply to the workload (root namespace
	// and its own namespace; selector matching is done here).
	PeerAuthentications []config.Resource
	// AuthorizationPolicies that select the workload.
	AuthorizationPolicies []config.Resource
	// RequestAuthentications that select the workload.
	RequestAuthentications []config.Resource
	// Services the proxy may route to.
	Services []registry.Service
}
