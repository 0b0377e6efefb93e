// Package client asks the ext_authz providers that CUSTOM
// AuthorizationPolicies delegate to (envoyExtAuthzGrpc over Envoy's
// Authorization gRPC API, envoyExtAuthzHttp over HTTP), as Envoy's
// ext_authz filters do, and turns every answer, or the lack of one, into
// an Answer: allow or deny, the headers to set, remove and respond with,
// failOpen and statusOnError applied.
//
// It sits between the proxy and the pure provider model of its parent
// package: extauthz.Compile turns MeshConfig into Providers once per push
// (the control plane validates with it and must not link gRPC clients);
// this package holds the I/O, pooling one connection or HTTP client per
// provider address and identity. The proxy turns a request or connection
// into a Request, gives the mesh services of the push in force
// (Services), the workload's mutual TLS (Config.TLS), and applies the
// Answer to its own request and response. It never imports the proxy.
package client
