// Package capture is the network side of transparent capture: the
// redirect rules that send a workload's TCP (and its DNS) to its proxy
// without the app's knowledge, as Istio's istio-init does, and the
// recovery of where a redirected connection was going (OriginalDst).
//
// The rules are computed by a pure function of a Config (Rules) and
// installed by Apply into one network namespace with nftables, as one
// table that is replaced atomically; Remove deletes that table. The
// proxy's own traffic is told apart by its UID/GID (Istio's 1337) or a
// socket mark, so it is never redirected to itself.
package capture
