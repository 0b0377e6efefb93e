// Package policy is the whole inbound decision for one workload, in the
// order an Istio sidecar takes it: peer authentication (may this
// connection be plaintext or must it be mutual TLS?), then request
// authentication (is the end-user JWT, if any, valid?), then authorization
// (CUSTOM, DENY, ALLOW). The proxy and `zmesh check` both call it, so an
// offline explanation is the decision the proxy would take, not a second
// implementation of it.
//
// Compile runs once per config push; Connection and Request run per
// connection and per request. The package holds no sockets; JWKS keys come
// through the authn.KeySource the caller passes in.
package policy
