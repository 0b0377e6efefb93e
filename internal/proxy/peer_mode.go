package proxy

import (
	"fmt"

	"github.com/zmesh/zmesh/internal/authn"
	"github.com/zmesh/zmesh/internal/xds"
)

// peerMode resolves the PeerAuthentication mode of the app's port, and
// the policy that set it.
func (p *Proxy) peerMode(v *xds.View) (peerMode, string, error) {
	w := authn.Workload{Namespace: p.cfg.Workload.Namespace, Labels: p.cfg.Workload.Labels}
	pp := authn.CompilePeer(v.PeerAuthentications, w, v.Mesh.RootNamespace)
	source := pp.Source(p.appPort)
	switch m := pp.Mode(p.appPort); m {
	case authn.ModeStrict:
		return modeStrict, source, nil
	case authn.ModePermissive:
		return modePermissive, source, nil
	case authn.ModeDisable:
		return modeDisable, source, nil
	default:
		// Never returned by authn; fail closed rather than guess.
		return modeStrict, source, fmt.Errorf("unexpected mode %v for port %d", m, p.appPort)
	}
}
