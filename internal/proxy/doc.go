// Package proxy is the data plane of `zmesh proxy`: the listeners that sit
// between a workload's app and the rest of the mesh.
//
//   - Inbound (mesh → app): tells mutual TLS from plaintext by the first
//     byte of each connection, enforces the PeerAuthentication mode for the
//     app's port, terminates mTLS with the workload's SPIFFE certificate,
//     and decides every request with the workload's policy.Set (the code
//     `zmesh check` runs) in Envoy's filter order: JWT validation (keys from
//     a per-proxy JWKS cache, prefetched on each push), a CUSTOM provider
//     over Envoy's ext_authz API (gRPC or HTTP, as the mesh config's
//     extensionProviders say) when a CUSTOM policy matches, then
//     DENY and ALLOW. What is allowed goes to the app over pooled plaintext
//     HTTP/1.1 (cleartext HTTP/2 for gRPC), with the JWT's output headers
//     and an Istio-style X-Forwarded-Client-Cert naming the caller. An mTLS
//     connection that asks (ALPN) for a TCP stream is authorized with its
//     connection attributes only, Istio's TCP semantics, and relayed to
//     the app (tcp.go).
//   - Outbound (app → mesh): the app's HTTP proxy. It resolves a request's
//     host against the services of the current view, picks an endpoint, and
//     speaks mTLS to endpoints that have a proxy, verifying that the
//     server holds the identity the registry expects (secure naming):
//     pooled HTTP/1.1 for the app's HTTP/1.1 requests (the protocol is
//     kept, as with Istio's default h2UpgradePolicy), one multiplexed
//     HTTP/2 connection for what that path leaves (streamed or large
//     bodies, bursts past the per-endpoint connection bound). Protocol
//     upgrades (WebSocket) always take HTTP/1.1, which can carry them. CONNECT to a mesh service opens a TCP stream over
//     mTLS to one of its endpoints; other hosts pass through, CONNECT
//     tunnels included.
//   - Transparent capture (Config.OriginalDst): connections the kernel
//     redirected to the outbound listener are routed by their original
//     destination (a service's virtual address or an endpoint), with the
//     service port's declared protocol or, failing that, sniffing (HTTP,
//     the app's own TLS by SNI, opaque TCP; transparent.go, sniff.go);
//     redirected inbound connections go to the app port they were
//     addressed to. PERMISSIVE ports also take plaintext raw TCP
//     (capture_inbound.go). Config.DNSAddr answers the mesh's names
//     (package dnsproxy).
//   - Automatic mTLS: an endpoint whose proxy disables mTLS on its port
//     (the control plane resolves it) gets plaintext.
//   - Admin: metrics, readiness and debug endpoints.
//
// Policies arrive as xds.View values through Apply, are compiled once per
// push and swapped atomically; each connection and request reads the
// compiled state it started with.
package proxy
