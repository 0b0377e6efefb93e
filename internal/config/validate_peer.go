package config

import (
	"fmt"
	"maps"
	"slices"

	security "istio.io/api/security/v1beta1"
)

// validatePeerAuthentication applies istiod's PeerAuthentication rules.
func validatePeerAuthentication(c *checker, in *security.PeerAuthentication) {
	checkSelector(c, "spec.selector", in.GetSelector())
	checkMTLSMode(c, "spec.mtls.mode", in.GetMtls())
	if len(in.GetPortLevelMtls()) > 0 && len(in.GetSelector().GetMatchLabels()) == 0 {
		// Ports are a workload's ports; without a selector there is no one
		// workload whose ports they could name.
		c.errorf("spec.portLevelMtls: requires a selector with labels: mesh/namespace peer authentication cannot have port level mTLS")
	}
	for _, port := range sortedPorts(in.GetPortLevelMtls()) {
		path := fmt.Sprintf("spec.portLevelMtls[%d]", port)
		checkPort(c, path, port)
		checkMTLSMode(c, path+".mode", in.GetPortLevelMtls()[port])
	}
}

func checkMTLSMode(c *checker, path string, m *security.PeerAuthentication_MutualTLS) {
	mode := m.GetMode()
	if security.PeerAuthentication_MutualTLS_Mode_name[int32(mode)] == "" {
		c.errorf("%s: unknown mode %d, must be one of UNSET, DISABLE, PERMISSIVE, STRICT", path, mode)
	}
}

func sortedPorts[V any](m map[uint32]V) []uint32 {
	return slices.Sorted(maps.Keys(m))
}
