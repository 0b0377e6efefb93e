// Package proxy is the data plane of `zmesh proxy`: the listeners that sit
// between a workload's app and the rest of the mesh.
//
//   - Inbound (mesh → app): tells mutual TLS from plaintext by the first
//     byte of each connection, enforces the PeerAuthentication mode for the
//     app's port, terminates mTLS with the workload's SPIFFE certificate,
//     asks the authorization engine about every request, and forwards what
//     is allowed to the app over pooled plaintext HTTP/1.1, with an
//     Istio-style X-Forwarded-Client-Cert naming the caller.
//   - Outbound (app → mesh): the app's HTTP proxy. It resolves a request's
//     host against the services of the current view, picks an endpoint, and
//     speaks mTLS over pooled HTTP/2 to endpoints that have a proxy,
//     verifying that the server holds the identity the registry expects
//     (secure naming). Unknown hosts pass through, CONNECT tunnels.
//   - Admin: metrics, readiness and debug endpoints.
//
// Policies arrive as xds.View values through Apply, are compiled once per
// push and swapped atomically; each connection and request reads the
// compiled state it started with.
package proxy
