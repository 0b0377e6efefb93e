// Package analyze finds what is wrong with a mesh's Istio resources before
// it bites, with istioctl analyze's message codes, levels and wording
// (IST0101 and the rest) for the checks Istio makes on the resources zmesh
// reads, and zmesh's own codes (ZM0001 and up) for the traps Istio does not
// report: policies that are silently ignored, rules that never match or
// match too much, resources the control plane would refuse.
//
// It is pure: an analyzer is a function of an Input (a config.Snapshot and
// what is known of the mesh around it: namespaces, services, workloads,
// mesh settings) that returns Messages. Where the Input comes from is the
// caller's business: FromFiles builds one from YAML documents (files
// already read), and the Kubernetes source can fill the same struct from a
// cluster. The package does no I/O and imports no network or Kubernetes
// packages.
package analyze
