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
	// Services are the short service names this workload serves in its
	// own namespace (e.g. "backend" -> backend.NS.svc.DOMAIN).
	Services []string
}

// Endpoint is one address serving a Service.
type Endpoint struct {
	Address  string // host:port
	Identity string // SPIFFE ID expected of the server (secure naming); empty without a proxy
	HasProxy bool   // true: speak mTLS to it (automatic mTLS)
	Workload string // NAMESPACE/NAME
	Labels   map[string]string
}

// Service is one hostname in the mesh and the endpoints serving it.
type Service struct {
	Hostname  string // fully qualified, e.g. backend.api.svc.cluster.local
	Namespace string
	Endpoints []Endpoint
}
