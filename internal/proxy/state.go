package proxy

import (
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/zmesh/zmesh/internal/xds"
)

// peerMode is the PeerAuthentication mode in force on the app's port.
type peerMode uint8

const (
	modeStrict peerMode = iota // mTLS only; the zero value fails closed
	modePermissive
	modeDisable
)

func (m peerMode) String() string {
	switch m {
	case modePermissive:
		return "PERMISSIVE"
	case modeDisable:
		return "DISABLE"
	}
	return "STRICT"
}

// acceptsTLS and acceptsPlaintext say which connections the mode admits.
func (m peerMode) acceptsTLS() bool       { return m != modeDisable }
func (m peerMode) acceptsPlaintext() bool { return m != modeStrict }

// state is one compiled view: everything a connection or request needs,
// immutable once built. Apply swaps it atomically; each request reads the
// state it started with.
type state struct {
	view   *xds.View
	routes *routeTable
	mode   peerMode
	// modeSource names the PeerAuthentication that set mode.
	modeSource string
	policy     *policy
	// trustDomains are the trust domains whose peers inbound accepts: the
	// mesh's and its aliases.
	trustDomains []spiffeid.TrustDomain
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
	st := &state{view: v, routes: routes, trustDomains: []spiffeid.TrustDomain{p.td}}
	for _, a := range v.Mesh.TrustDomainAliases {
		td, err := spiffeid.TrustDomainFromString(a)
		if err != nil {
			return nil, err
		}
		st.trustDomains = append(st.trustDomains, td)
	}
	if err := p.compilePolicy(st, v); err != nil {
		return nil, err
	}
	return st, nil
}

// trusts reports whether a peer from td may connect.
func (st *state) trusts(td spiffeid.TrustDomain) bool {
	for _, t := range st.trustDomains {
		if t == td {
			return true
		}
	}
	return false
}
