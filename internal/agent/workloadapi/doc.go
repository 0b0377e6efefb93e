// Package workloadapi serves the SPIFFE Workload API from the agent's
// identity, so any SPIFFE-aware application (go-spiffe's workloadapi client,
// SPIRE's helpers, Envoy via spiffe-helper) can fetch its X.509 SVID and
// trust bundle from the proxy next to it instead of from a SPIRE agent.
//
// The agent holds one identity, so every caller admitted to the socket gets
// that identity: the socket's file mode and the caller's uid (see package
// localsock) are the workload attestation. FetchX509SVID and
// FetchX509Bundles stream the state again on every rotation and bundle
// change. JWT-SVIDs are not issued: FetchJWTSVID and ValidateJWTSVID answer
// Unimplemented, FetchJWTBundles an empty set.
package workloadapi
