// Package ca is the mesh's certificate authority: it holds the signing key
// (a self-signed root it creates, or an operator's Istio "cacerts"
// intermediate), turns authenticated certificate requests into short-lived
// SPIFFE leaf certificates, issues the control plane's own serving
// certificate, and mints and verifies the bootstrap tokens of
// `zmesh token create`. Its signing material can be replaced at run time
// (Reload, Watch) and its root rotated without an outage (Rotate; see
// rotation.go for the prepare, activate, retire design).
//
// The package is the signing core only: it imports no gRPC and no net/http.
// The CSR service that exposes it on the network, and the authenticators that
// decide who a caller is, live in package ca/csr. Sign never trusts a name in
// the request; the identity it writes into a certificate is always the one
// the caller passes after authentication.
package ca
