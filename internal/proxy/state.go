package proxy

import (
	"crypto/tls"
	"fmt"
	"slices"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/zmesh/zmesh/internal/authn"
	"github.com/zmesh/zmesh/internal/authz"
	"github.com/zmesh/zmesh/internal/destrule"
	"github.com/zmesh/zmesh/internal/extauthz"
	"github.com/zmesh/zmesh/internal/meshtls"
	"github.com/zmesh/zmesh/internal/policy"
	vroute "github.com/zmesh/zmesh/internal/route"
	"github.com/zmesh/zmesh/internal/xds"
)

// state is one compiled view: everything a connection or request needs,
// immutable once built. Apply swaps it atomically; each request reads the
// state it started with.
type state struct {
	view   *xds.View
	routes *routeTable
	// vroutes are the VirtualServices of the outbound side, by host.
	vroutes *vroute.Table
	// dnsDomain is the services' domain (cluster.local).
	dnsDomain string
	// set is the workload's inbound policy: peer authentication, request
	// authentication and authorization, the code path `zmesh check` runs.
	set *policy.Set
	// mode is the PeerAuthentication mode of the app's port and
	// modeSource the policy that set it, for logs and /debug/config.
	mode       authn.Mode
	modeSource string
	// norm is the mesh's path normalization: the path policies match is
	// the path forwarded to the app.
	norm authz.PathNormalization
	// providers are the mesh's ext_authz providers, by name.
	providers map[string]*extauthz.Provider
	// trustDomains are the trust domains whose peers the proxy accepts,
	// verified against the mesh's bundle (see trustBundles): the proxy's
	// own, the view's mesh trust domain if it differs, and the mesh's
	// trustDomainAliases.
	trustDomains []spiffeid.TrustDomain
	// registryOnly is MeshConfig outboundTrafficPolicy REGISTRY_ONLY:
	// the outbound listener reaches mesh services only, and a request
	// for any other host is refused (Istio's BlackHoleCluster) instead of
	// passed through.
	registryOnly bool
	// h2Upgrade is MeshConfig h2UpgradePolicy UPGRADE: the app's HTTP/1.1
	// requests, too, go to server proxies over multiplexed HTTP/2.
	h2Upgrade bool
	// tls is MeshConfig meshMTLS; serverTLS is the inbound's TLS
	// configuration with it applied (nil: the inbound's own).
	tls       meshtls.Policy
	serverTLS *tls.Config
	// trace is the tracing of each side (Telemetry, MeshConfig).
	trace traceState
	// gateway is the compiled Gateways of a gateway proxy; nil for a
	// sidecar.
	gateway *gatewayState
}

// compile builds the state for v. It fails, and the caller keeps the old
// state, when any part of v does not compile.
func (p *Proxy) compile(v *xds.View) (*state, error) {
	dns := v.Mesh.DNSDomain
	if dns == "" {
		dns = p.cfg.DNSDomain
	}
	routes, err := buildRoutes(v.Services, p.cfg.Workload.Namespace, dns)
	if err != nil {
		return nil, err
	}
	client := destrule.Client{Namespace: p.cfg.Workload.Namespace, Labels: p.cfg.Workload.Labels, RootNamespace: v.Mesh.RootNamespace, DNSDomain: dns}
	if err := applyDestinationRules(routes, v.Services, v.DestinationRules, client, p.cfg.CredentialDir, p.now); err != nil {
		return nil, err
	}
	st := &state{view: v, routes: routes, trustDomains: []spiffeid.TrustDomain{p.td}, dnsDomain: dns}
	if err := p.compileVirtualServices(st, v); err != nil {
		return nil, err
	}
	if p.gw != nil {
		if err := p.compileGateway(st, v); err != nil {
			return nil, err
		}
	}
	names := v.Mesh.TrustDomainAliases
	if v.Mesh.TrustDomain != "" {
		names = append([]string{v.Mesh.TrustDomain}, names...)
	}
	for _, name := range names {
		td, err := spiffeid.TrustDomainFromString(name)
		if err != nil {
			return nil, fmt.Errorf("mesh config: trust domain %q: %w", name, err)
		}
		if !st.trusts(td) {
			st.trustDomains = append(st.trustDomains, td)
		}
	}
	switch v.Mesh.OutboundTrafficPolicy {
	case "", "ALLOW_ANY":
	case "REGISTRY_ONLY":
		st.registryOnly = true
	default:
		// Unknown: refuse the push rather than guess which way to fail.
		return nil, fmt.Errorf("mesh config: outboundTrafficPolicy %q is neither ALLOW_ANY nor REGISTRY_ONLY", v.Mesh.OutboundTrafficPolicy)
	}
	switch v.Mesh.H2UpgradePolicy {
	case "", "DO_NOT_UPGRADE":
	case "UPGRADE":
		st.h2Upgrade = true
	default:
		return nil, fmt.Errorf("mesh config: h2UpgradePolicy %q is neither DO_NOT_UPGRADE nor UPGRADE", v.Mesh.H2UpgradePolicy)
	}
	if st.tls, err = meshtls.Parse(v.Mesh.MeshMTLS); err != nil {
		return nil, fmt.Errorf("mesh config: %w", err)
	}
	if !st.tls.IsDefault() {
		st.serverTLS = st.tls.Apply(p.in.baseTLS)
	}
	if err := p.compilePolicy(st, v); err != nil {
		return nil, err
	}
	p.compileTracing(st, v)
	return st, nil
}

// trusts reports whether td is one of the mesh's trust domains: a peer
// from it may connect, and its identities are equivalent to the same paths
// in the others.
func (st *state) trusts(td spiffeid.TrustDomain) bool {
	return slices.Contains(st.trustDomains, td)
}
