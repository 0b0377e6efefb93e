// Package podnet gives each workload of the local mesh a network of its
// own, as a pod has on Kubernetes: a named network namespace (usable with
// `ip netns exec`), a veth pair to a bridge on the host with an address
// of the bridge's subnet, a default route to the host, and its own
// resolv.conf and hosts files under /etc/netns/NAME. The plan (names and
// addresses) is a pure function of the workloads; Create and Destroy do
// the netlink work. A state file records what was created, so that the
// next start removes what a killed run left behind.
package podnet
