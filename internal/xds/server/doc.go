// Package server is the control plane's end of the config stream: a delta
// Aggregated Discovery Service (ADS) that authenticates each proxy by its
// mesh certificate, registers the workload it announces, and pushes it the
// View xds.Build derives for it, resource by resource, tracking what each
// proxy has ACKed or NACKed (ProxyStatus, for `zmesh proxy-status`;
// Stats, for metrics). Services are admitted resource by resource
// (registry.Admit) with the rules proxies apply, so that one ServiceEntry a
// proxy would refuse is left out and reported (Rejected) instead of making
// every proxy refuse every later push.
//
// The stream handler is written directly on go-control-plane's generated
// AggregatedDiscoveryServiceServer rather than on its pkg/server and a
// cache: views are per proxy and keyed by the identity authenticated on the
// stream itself, resources are Istio config under Istio type URLs that the
// snapshot cache does not know, and ACK/NACK state must be visible to
// proxy-status. The protocol part this needs (subscriptions, per-resource
// versions, nonces) is small and is tested end to end with the client.
package server
