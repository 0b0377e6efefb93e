package authn

import (
	"sort"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/labelsel"
	security "istio.io/api/security/v1beta1"
)

// Mode is the mutual TLS requirement a workload's inbound listener enforces
// on one port, as decided by PeerAuthentication.
type Mode uint8

const (
	// ModeUnset means "inherit"; PeerPolicy.Mode never returns it.
	ModeUnset Mode = iota
	// ModePermissive accepts both mTLS and plaintext connections. It is
	// Istio's default when no policy says otherwise.
	ModePermissive
	// ModeStrict accepts only mTLS connections with a client certificate.
	ModeStrict
	// ModeDisable accepts only plaintext connections (no mTLS tunnel).
	ModeDisable
)

// String returns Istio's name for m: "STRICT", "PERMISSIVE", "DISABLE" or "UNSET".
func (m Mode) String() string {
	switch m {
	case ModePermissive:
		return "PERMISSIVE"
	case ModeStrict:
		return "STRICT"
	case ModeDisable:
		return "DISABLE"
	default:
		return "UNSET"
	}
}

// MarshalText lets Mode print as its name in JSON and logs.
func (m Mode) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

func modeOf(m *security.PeerAuthentication_MutualTLS) Mode {
	switch m.GetMode() {
	case security.PeerAuthentication_MutualTLS_PERMISSIVE:
		return ModePermissive
	case security.PeerAuthentication_MutualTLS_STRICT:
		return ModeStrict
	case security.PeerAuthentication_MutualTLS_DISABLE:
		return ModeDisable
	default:
		return ModeUnset
	}
}

// Workload is what peer authentication needs to know of a workload: the
// namespace it runs in and its labels: labelsel.Workload, one type for
// every policy engine.
type Workload = labelsel.Workload

// decision is one resolved mode and the policy ("NAMESPACE/NAME") that set
// it; an empty policy means the mesh default.
type decision struct {
	mode   Mode
	policy string
}

// PeerPolicy is the peer authentication in force for one workload, compiled
// from every PeerAuthentication that applies to it. It is immutable and
// safe for concurrent use; Mode and Source do not allocate. The zero value
// is the policy of a mesh without PeerAuthentications: PERMISSIVE on every
// port.
type PeerPolicy struct {
	workload decision            // mode for ports without a port-level setting
	ports    map[uint32]decision // port-level settings of the workload policy
}

// Mode returns the mTLS mode for connections to port, the workload's own
// (target) port, never ModeUnset.
func (p PeerPolicy) Mode(port uint32) Mode {
	return p.decide(port).mode
}

// Source returns "NAMESPACE/NAME" of the PeerAuthentication that decided
// the mode of port, or "" when no policy did and the PERMISSIVE default
// applies. When a policy's mode is UNSET, the source is the policy it
// inherited from.
func (p PeerPolicy) Source(port uint32) string {
	return p.decide(port).policy
}

func (p PeerPolicy) decide(port uint32) decision {
	if d, ok := p.ports[port]; ok {
		return d
	}
	return p.base()
}

// base is the workload-level decision with the PERMISSIVE default applied.
func (p PeerPolicy) base() decision {
	if p.workload.mode == ModeUnset {
		return decision{mode: ModePermissive}
	}
	return p.workload
}

// Ports returns the ports that have a port-level mode, in increasing
// order, so that a proxy can build one listener filter per exception.
func (p PeerPolicy) Ports() []uint32 {
	ports := make([]uint32, 0, len(p.ports))
	for port := range p.ports {
		ports = append(ports, port)
	}
	sort.Slice(ports, func(i, j int) bool { return ports[i] < ports[j] })
	return ports
}

// CompilePeer resolves the PeerAuthentications in pas that apply to w into
// one PeerPolicy, with Istio's precedence:
//
//  1. a workload policy: in w's namespace (not the root namespace), with a
//     selector whose matchLabels are all among w's labels;
//  2. else or where that policy's mode is UNSET, the namespace policy: in
//     w's namespace, without a selector (or with an empty one);
//  3. else or where that is UNSET too, the mesh policy: in rootNamespace,
//     without a selector;
//  4. else PERMISSIVE.
//
// Port-level settings (portLevelMtls) count only on the workload policy
// and override the result for their port; a port-level UNSET inherits the
// workload's resolved mode. Istio picks the oldest policy when several
// compete at one level; resources here carry no creation time, so CompilePeer
// picks the first by name, which is deterministic and lets an operator
// control the choice. As in Istio, a policy with a selector in the root
// namespace is ignored: selectors match only in their own namespace.
//
// pas may hold any resources: those of other kinds or namespaces are
// skipped, so a whole snapshot list can be passed. rootNamespace ""
// means "istio-system".
func CompilePeer(pas []config.Resource, w Workload, rootNamespace string) PeerPolicy {
	if rootNamespace == "" {
		rootNamespace = DefaultRootNamespace
	}
	var mesh, namespace, workload *candidate
	for _, r := range pas {
		spec, ok := r.Spec.(*security.PeerAuthentication)
		if !ok || r.Kind != config.KindPeerAuthentication {
			continue
		}
		c := &candidate{name: r.Name, key: r.Key(), spec: spec}
		selector := spec.GetSelector().GetMatchLabels()
		switch {
		case len(selector) == 0 && r.Namespace == rootNamespace:
			mesh = c.earlier(mesh)
		case len(selector) == 0 && r.Namespace == w.Namespace:
			namespace = c.earlier(namespace)
		case len(selector) > 0 && r.Namespace == w.Namespace && r.Namespace != rootNamespace &&
			labelsel.Matches(selector, w.Labels):
			workload = c.earlier(workload)
		}
	}

	var p PeerPolicy
	for _, c := range []*candidate{mesh, namespace, workload} {
		if c == nil {
			continue
		}
		if m := modeOf(c.spec.GetMtls()); m != ModeUnset {
			p.workload = decision{mode: m, policy: c.key}
		}
	}
	if workload != nil && len(workload.spec.GetPortLevelMtls()) > 0 {
		inherited := p.base()
		p.ports = make(map[uint32]decision, len(workload.spec.GetPortLevelMtls()))
		for port, mtls := range workload.spec.GetPortLevelMtls() {
			if m := modeOf(mtls); m != ModeUnset {
				p.ports[port] = decision{mode: m, policy: workload.key}
			} else {
				p.ports[port] = inherited
			}
		}
	}
	return p
}

// DefaultRootNamespace is Istio's default root namespace, where mesh-wide
// policies live.
const DefaultRootNamespace = "istio-system"

type candidate struct {
	name, key string
	spec      *security.PeerAuthentication
}

// earlier returns whichever of c and other wins a tie at one level.
func (c *candidate) earlier(other *candidate) *candidate {
	if other == nil || c.name < other.name {
		return c
	}
	return other
}
