package xds

import (
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/registry"
)

// Mesh holds the mesh-wide settings a proxy needs to interpret its
// policies: the parts of Istio's MeshConfig that zmesh honours. It travels
// to proxies as the MeshConfig resource.
type Mesh struct {
	TrustDomain        string // e.g. cluster.local
	TrustDomainAliases []string
	RootNamespace      string // e.g. istio-system
	DNSDomain          string // e.g. cluster.local: services are NAME.NS.svc.DNSDomain

	// PathNormalization is MeshConfig pathNormalization.normalization as
	// Istio spells it: "BASE", "MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES"
	// or "NONE"; "" (or "DEFAULT") means BASE.
	PathNormalization string
	// ExtensionProviders are MeshConfig extensionProviders, as given.
	// Proxies call the envoyExtAuthzGrpc ones for CUSTOM policies. The
	// messages are shared and must not be modified.
	ExtensionProviders []*meshv1alpha1.MeshConfig_ExtensionProvider
	// OutboundTrafficPolicy is MeshConfig outboundTrafficPolicy.mode:
	// "ALLOW_ANY" or "REGISTRY_ONLY"; "" means ALLOW_ANY. Under
	// REGISTRY_ONLY a proxy's outbound listener refuses (502) hosts that
	// are not mesh services instead of passing them through.
	OutboundTrafficPolicy string
	// H2UpgradePolicy is MeshConfig h2UpgradePolicy: "DO_NOT_UPGRADE" (or
	// "", Istio's default) keeps an app's HTTP/1.1 requests HTTP/1.1 on
	// the mesh hop, one request per pooled connection at a time;
	// "UPGRADE" sends every request over one multiplexed HTTP/2
	// connection per server proxy.
	H2UpgradePolicy string
	// MeshMTLS is MeshConfig meshMTLS, as given (nil: the proxies'
	// defaults): the least TLS version, the TLS 1.2 cipher suites and the
	// ECDH curves of the mutual TLS between proxies. The message is shared
	// and must not be modified.
	MeshMTLS *meshv1alpha1.MeshConfig_TLSConfig
	// DefaultTracingProviders is MeshConfig defaultProviders.tracing: the
	// tracing providers of workloads that no Telemetry names one for.
	DefaultTracingProviders []string
	// TracingSampling is MeshConfig defaultConfig.tracing.sampling, the
	// percentage of requests traced where no Telemetry sets
	// randomSamplingPercentage; 0 means Istio's default (1%).
	TracingSampling float64
}

// Proxy is what the control plane knows of a connected proxy: the workload
// it serves. Identity fields come from the proxy's authenticated mesh
// certificate; Labels and Services from its registration.
type Proxy struct {
	ID string // NAMESPACE/NAME, the xDS node ID
	registry.Workload
	// Gateway is set for a gateway proxy (`zmesh proxy --gateway`, Istio's
	// router): it gets the Gateways selecting it and the VirtualServices
	// bound to them, instead of those bound to the mesh's sidecars.
	Gateway bool
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
	// Telemetries of the root namespace and of the workload's namespace
	// whose selector (if any) matches the workload: the proxy resolves
	// their levels (tracing.Resolve).
	Telemetries []config.Resource
	// DestinationRules the proxy may be governed by: those exported to
	// its namespace (destrule.Visible). The proxy
	// picks the one for each host (destrule.Select).
	DestinationRules []config.Resource
	// Services the proxy may route to.
	Services []registry.Service
	// VirtualServices that bind to sidecars ("mesh" or no gateways) and
	// are exported to the proxy's namespace: how its outbound HTTP
	// traffic is routed. For a gateway proxy, those bound to one of its
	// Gateways and exported to that Gateway's namespace instead.
	VirtualServices []config.Resource
	// Gateways are, for a gateway proxy only, the Gateways whose selector
	// matches its labels (in any namespace, as Istio selects them).
	Gateways []config.Resource
	// Credentials are, for a gateway proxy only, the Secrets its
	// Gateways' servers name by credentialName, from its own namespace
	// (GatewayCredentials), as the control plane's Kubernetes source
	// read them. They hold private keys.
	Credentials []Credential
}
