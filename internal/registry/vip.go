package registry

import (
	"hash/fnv"
	"net/netip"
	"slices"
	"strings"
)

// AutoAllocatePrefix is the range virtual addresses are allocated from,
// Istio's own for DNS auto-allocation (class E, never routed): an app that
// connects to one without a proxy in the way reaches nothing.
var AutoAllocatePrefix = netip.MustParsePrefix("240.240.0.0/16")

// AllocateAddresses gives every service that has no virtual address one
// from AutoAllocatePrefix, so that a captured app can resolve any mesh name
// (its proxy's DNS answers with it) and its proxy can map the connection
// back to the service. Kubernetes Services bring their ClusterIP and
// ServiceEntries may declare addresses; those are kept and never handed out
// again. Wildcard hosts get none (as in Istio: no single name resolves to
// them).
//
// The address of a hostname is a hash of it, probed linearly on a
// collision, with services taken in hostname order: every control plane
// replica allocates the same addresses for the same services, and a
// service keeps its address when others come and go unless they collide
// with it. AllocateAddresses is pure: svcs is not modified; services that
// gain an address are copies.
func AllocateAddresses(svcs []Service) []Service {
	taken := map[netip.Addr]bool{}
	need := 0
	for _, s := range svcs {
		if len(s.Addresses) > 0 {
			for _, a := range s.Addresses {
				if ip, err := netip.ParseAddr(a); err == nil {
					taken[ip.Unmap()] = true
				}
			}
			continue
		}
		if !strings.HasPrefix(s.Hostname, "*") {
			need++
		}
	}
	if need == 0 {
		return svcs
	}
	order := make([]int, 0, need)
	for i, s := range svcs {
		if len(s.Addresses) == 0 && !strings.HasPrefix(s.Hostname, "*") {
			order = append(order, i)
		}
	}
	slices.SortStableFunc(order, func(a, b int) int { return strings.Compare(svcs[a].Hostname, svcs[b].Hostname) })
	out := slices.Clone(svcs)
	assigned := map[string]string{} // hostname -> address, for duplicates of a hostname
	for _, i := range order {
		host := canonicalName(svcs[i].Hostname)
		if a, ok := assigned[host]; ok {
			out[i].Addresses = []string{a}
			continue
		}
		ip, ok := allocate(host, taken)
		if !ok {
			continue // the range is full: the service stays reachable by name only
		}
		taken[ip] = true
		assigned[host] = ip.String()
		out[i].Addresses = []string{ip.String()}
	}
	return out
}

// slots is the number of usable addresses in AutoAllocatePrefix: all but
// the first (the network) and the last (broadcast), which some stacks
// refuse.
const slots = 1<<16 - 2

// allocate returns the first free address of host's probe sequence.
func allocate(host string, taken map[netip.Addr]bool) (netip.Addr, bool) {
	h := fnv.New32a()
	h.Write([]byte(host))
	start := h.Sum32() % slots
	base := AutoAllocatePrefix.Addr().As4()
	for i := uint32(0); i < slots; i++ {
		n := (start+i)%slots + 1 // 1 .. 65534
		ip := netip.AddrFrom4([4]byte{base[0], base[1], byte(n >> 8), byte(n)})
		if !taken[ip] {
			return ip, true
		}
	}
	return netip.Addr{}, false
}

// canonicalName lower-cases a hostname and drops a trailing dot.
func canonicalName(h string) string {
	return strings.ToLower(strings.TrimSuffix(h, "."))
}
