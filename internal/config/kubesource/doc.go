// Package kubesource serves Istio resources, Kubernetes services and the
// mesh config from a Kubernetes cluster: the control plane's config source
// when it runs against a cluster instead of a directory. It is the only
// package that reads the cluster's config (DESIGN §3).
//
// Istio kinds are watched with dynamic informers and every object goes
// through the same strict parse (config.Parse) and validation
// (config.Validate) as a file, so a resource means the same thing, and
// gives the same snapshot version, whichever way it reached zmesh. An
// object zmesh rejects is left out alone: it is logged with its kind,
// namespace and name, gets a Warning Event, and is counted in a metric,
// while every other object keeps flowing. Services, EndpointSlices and
// Pods become registry.Service values (ClusterIPs, ports, endpoints with
// SPIFFE identities from their pods' service accounts); the `mesh` key of
// the root namespace's `istio` ConfigMap is handed to the control plane's
// own mesh-config checks. Bursts of events are debounced into one
// snapshot; each event re-parses only its own object and each flush
// rebuilds only the services it touched.
//
// Permissions it needs (for the control plane's ClusterRole): get, list
// and watch on authorizationpolicies, peerauthentications and
// requestauthentications (security.istio.io), serviceentries,
// workloadentries, destinationrules, virtualservices and sidecars
// (networking.istio.io), services, pods, namespaces and endpointslices
// (discovery.k8s.io) in every namespace, and configmaps in the root
// namespace; create on events.
package kubesource
