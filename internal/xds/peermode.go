package xds

import (
	"net"
	"strconv"
	"strings"

	security "istio.io/api/security/v1beta1"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/labelsel"
	"github.com/zmesh/zmesh/internal/registry"
)

// Endpoint mTLS modes, as registry.Endpoint.MTLSMode carries them.
const (
	ModeStrict     = "STRICT"
	ModePermissive = "PERMISSIVE"
	ModeDisable    = "DISABLE"
)

// withServerModes returns services with MTLSMode set on every endpoint
// that has a proxy: the PeerAuthentication mode that proxy enforces at the
// endpoint's port. A client proxy speaks mTLS to an endpoint with a proxy
// unless that mode is DISABLE, as Istio's automatic mTLS does, so that
// callers of a DISABLE workload are not refused. Services whose endpoints
// need no change are shared, not copied.
//
// The resolution is Istio's, as authn.CompilePeer does it for the server
// proxy itself (a test holds the two to the same answers): the workload
// policy (selector matching the endpoint's labels, in its namespace, not
// the root), else the namespace policy, else the mesh policy (root
// namespace, no selector), each level only where the one above leaves the
// mode UNSET, the first by name at each level; portLevelMtls of the
// workload policy for the endpoint's port; PERMISSIVE when none says.
// The xds package cannot import authn (its JWT library pulls in
// net/http), hence this second reading of the same rules.
func withServerModes(pas []config.Resource, services []registry.Service, rootNS string) []registry.Service {
	if rootNS == "" {
		rootNS = "istio-system"
	}
	byNS := map[string][]config.Resource{}
	for _, r := range pas {
		if _, ok := r.Spec.(*security.PeerAuthentication); ok && r.Kind == config.KindPeerAuthentication {
			byNS[r.Namespace] = append(byNS[r.Namespace], r)
		}
	}
	var out []registry.Service
	for i, s := range services {
		var eps []registry.Endpoint
		for j, ep := range s.Endpoints {
			mode := ""
			if ep.HasProxy {
				ns, _, _ := strings.Cut(ep.Workload, "/")
				mode = serverMode(byNS[rootNS], byNS[ns], ns == rootNS, ep.Labels, portOf(ep.Address))
			}
			if mode == ep.MTLSMode {
				continue
			}
			if eps == nil {
				eps = append([]registry.Endpoint(nil), s.Endpoints...)
			}
			eps[j].MTLSMode = mode
		}
		if eps == nil && out == nil {
			continue
		}
		if out == nil {
			out = append([]registry.Service(nil), services...)
		}
		if eps != nil {
			out[i].Endpoints = eps
		}
	}
	if out == nil {
		return services
	}
	return out
}

// serverMode resolves the mode at port of a workload with labels, given
// the PeerAuthentications of the root namespace and of its own.
func serverMode(root, own []config.Resource, inRoot bool, labels map[string]string, port uint32) string {
	var mesh, namespace, workload *config.Resource
	first := func(cur *config.Resource, r *config.Resource) *config.Resource {
		if cur == nil || r.Name < cur.Name {
			return r
		}
		return cur
	}
	for i := range root {
		if len(root[i].Spec.(*security.PeerAuthentication).GetSelector().GetMatchLabels()) == 0 {
			mesh = first(mesh, &root[i])
		}
	}
	if !inRoot {
		for i := range own {
			sel := own[i].Spec.(*security.PeerAuthentication).GetSelector().GetMatchLabels()
			switch {
			case len(sel) == 0:
				namespace = first(namespace, &own[i])
			case labelsel.Matches(sel, labels):
				workload = first(workload, &own[i])
			}
		}
	}
	mode := ModePermissive
	for _, r := range []*config.Resource{mesh, namespace, workload} {
		if r == nil {
			continue
		}
		if m := modeName(r.Spec.(*security.PeerAuthentication).GetMtls()); m != "" {
			mode = m
		}
	}
	if workload != nil {
		if pl, ok := workload.Spec.(*security.PeerAuthentication).GetPortLevelMtls()[port]; ok && port != 0 {
			if m := modeName(pl); m != "" {
				mode = m
			}
		}
	}
	return mode
}

func modeName(m *security.PeerAuthentication_MutualTLS) string {
	switch m.GetMode() {
	case security.PeerAuthentication_MutualTLS_STRICT:
		return ModeStrict
	case security.PeerAuthentication_MutualTLS_PERMISSIVE:
		return ModePermissive
	case security.PeerAuthentication_MutualTLS_DISABLE:
		return ModeDisable
	}
	return ""
}

// portOf returns the port of a host:port address, 0 when it has none.
func portOf(addr string) uint32 {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return 0
	}
	return uint32(n)
}
