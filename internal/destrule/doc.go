// Package destrule decides which DestinationRule governs a client's
// traffic to a host, and what it says for one subset and port: Istio's
// lookup order (the client's namespace, then the host's, then the root
// namespace, each through exportTo), its workloadSelector rule, and its
// precedence of subset and port settings over the host's. It also picks
// the endpoints of a subset by labels.
//
// It is pure: the control plane uses Visible to push each proxy only the
// rules it may see, and the proxy compiles its routes with Select and
// Rule.Policy once per push. Nothing here opens a socket or reads a file;
// the files a TLS setting names are read by the proxy that dials.
//
// Routing to a subset (a VirtualService destination host+subset) goes
// through the same compiled policies in the proxy (route.pickAt(subset,
// port), which applies the subset's TLS, load balancer, pool limits and
// outlier detection to its members only); SubsetEndpoints is the rule
// for membership, for callers that hold registry endpoints.
package destrule
