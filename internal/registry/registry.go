// Package registry knows the mesh's services and the workloads behind them:
// which hostnames exist, which addresses serve them, which identities may
// serve them (secure naming), and whether those endpoints have a proxy
// (automatic mTLS).
package registry

// Workload is one workload instance known to the mesh: in the local mesh,
// a proxy that registered itself with the control plane.
type Workload struct {
	Name           string // e.g. "backend"
	Namespace      string
	ServiceAccount string
	Labels         map[string]string
	// Identity is the SPIFFE ID the control plane authenticated for this
	// workload (from its mesh certificate), never what it claimed.
	Identity string
	// Address is the host:port where the workload is reached by other
	// proxies: its proxy's inbound listener when HasProxy.
	Address  string
	HasProxy bool
	// AdminAddress is host:port of its proxy's admin listener (/metrics,
	// /debug/certs), as the proxy reports it, so the control plane's web
	// view can read the proxy's own metrics. Claimed, not proven: the
	// control plane reads it only on the host of Address. Empty: unknown.
	AdminAddress string
	// TunnelPort is the port of its proxy's HBONE tunnel (Istio's 15008)
	// on the host of Address: client proxies carry their TCP streams to
	// it multiplexed on one mTLS connection. 0: no tunnel.
	TunnelPort uint32
	// Services are the short service names this workload serves in its
	// own namespace (e.g. "backend" -> backend.NS.svc.DOMAIN).
	Services []string
}

// DefaultTunnelPort is the HBONE tunnel's port in a pod, Istio's 15008:
// what the injector binds, what capture leaves unredirected, and what a
// pod labelled LabelTunnel=TunnelHTTP is reached on.
const DefaultTunnelPort = 15008

// LabelTunnel is Istio's label of a workload whose proxy takes HBONE, with
// the value TunnelHTTP.
const (
	LabelTunnel = "networking.istio.io/tunnel"
	TunnelHTTP  = "http"
)

// Endpoint is one address serving a Service.
type Endpoint struct {
	Address  string // host:port
	Identity string // SPIFFE ID expected of the server (secure naming); empty without a proxy
	HasProxy bool   // true: speak mTLS to it (automatic mTLS)
	Workload string // NAMESPACE/NAME
	Labels   map[string]string
	// MTLSMode is the PeerAuthentication mode the endpoint's proxy
	// enforces at its port (STRICT, PERMISSIVE or DISABLE), resolved by
	// the control plane for automatic mTLS: a client proxy speaks mTLS to
	// an endpoint with a proxy unless this is DISABLE. "": not resolved.
	MTLSMode string
	// TunnelPort is the port of the endpoint's HBONE tunnel on the host
	// of Address (0: none); meaningful only with HasProxy.
	TunnelPort uint32
}

// Service is one hostname in the mesh and the endpoints serving it.
type Service struct {
	Hostname  string // fully qualified, e.g. backend.api.svc.cluster.local
	Namespace string
	// Addresses are the service's virtual IPs (a Kubernetes ClusterIP, a
	// ServiceEntry's addresses, or one the control plane allocated): what
	// the service's name resolves to inside a captured workload, and what
	// the client proxy maps an intercepted connection's original
	// destination back to. Empty: the service is reached by name only.
	Addresses []string
	// Ports are the service's ports. Their names and appProtocol decide
	// the protocol (Istio's explicit protocol selection); a port with no
	// known protocol is sniffed. Empty: any port, protocol sniffed.
	Ports     []Port
	Endpoints []Endpoint
}

// Port is one port of a Service.
type Port struct {
	Number uint32
	// Name is the port's name; Istio derives the protocol from its prefix
	// ("http-web", "grpc", "tcp-db") when Protocol is empty.
	Name string
	// Protocol is the port's declared protocol (a ServiceEntry port's
	// protocol, a Kubernetes appProtocol), upper case: HTTP, HTTP2, GRPC,
	// TCP, TLS, HTTPS, MONGO... Empty: from Name, else sniffed.
	Protocol string
	// TargetPort is the port the endpoints listen on; 0: Number.
	TargetPort uint32
}
