package config

import (
	"strings"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"
)

// kindsByGroup lists, for each API group, the versions served and the kinds
// zmesh parses in it, with a constructor for the spec message. Istio serves
// several versions of one schema (security v1 is an alias of v1beta1,
// networking v1 and v1beta1 have v1alpha3's fields), so every version of a
// kind decodes into the same Go type and policy code needs one type switch.
var kindsByGroup = map[string]struct {
	versions []string
	kinds    map[Kind]func() proto.Message
}{
	"security.istio.io": {
		versions: []string{"v1", "v1beta1"},
		kinds: map[Kind]func() proto.Message{
			KindPeerAuthentication:    func() proto.Message { return &security.PeerAuthentication{} },
			KindAuthorizationPolicy:   func() proto.Message { return &security.AuthorizationPolicy{} },
			KindRequestAuthentication: func() proto.Message { return &security.RequestAuthentication{} },
		},
	},
	"networking.istio.io": {
		versions: []string{"v1", "v1beta1", "v1alpha3"},
		kinds: map[Kind]func() proto.Message{
			KindServiceEntry:    func() proto.Message { return &networking.ServiceEntry{} },
			KindWorkloadEntry:   func() proto.Message { return &networking.WorkloadEntry{} },
			KindDestinationRule: func() proto.Message { return &networking.DestinationRule{} },
			KindVirtualService:  func() proto.Message { return &networking.VirtualService{} },
			KindSidecar:         func() proto.Message { return &networking.Sidecar{} },
			KindGateway:         func() proto.Message { return &networking.Gateway{} },
		},
	},
}

// ownGroup is the API group of zmesh's own local-mesh documents (for
// example kind Workload). They share files with Istio resources, and the
// local mesh launcher reads them itself, so Parse skips them silently.
const ownGroup = "zmesh.dev"

// newSpec returns an empty spec message for apiVersion and kind, or nil
// when zmesh does not know that pair.
func newSpec(apiVersion string, kind Kind) proto.Message {
	group, version, ok := strings.Cut(apiVersion, "/")
	if !ok {
		return nil
	}
	g, ok := kindsByGroup[group]
	if !ok {
		return nil
	}
	known := false
	for _, v := range g.versions {
		if v == version {
			known = true
			break
		}
	}
	if !known {
		return nil
	}
	if f := g.kinds[kind]; f != nil {
		return f()
	}
	return nil
}

// isOwnGroup reports whether apiVersion belongs to zmesh's own group.
func isOwnGroup(apiVersion string) bool {
	group, _, _ := strings.Cut(apiVersion, "/")
	return group == ownGroup || strings.HasSuffix(group, "."+ownGroup)
}
