// Package csr serves the mesh CA on the network as Istio's
// IstioCertificateService (istio.io/api/security/v1alpha1), so zmesh agents
// and Istio agents alike can request workload certificates.
//
// A request is answered in three steps: authenticate the caller (bearer
// bootstrap token, or the caller's current mesh certificate for renewal,
// through the small Authenticator interface), parse the CSR, and have the
// ca.Authority sign the CSR's public key for the authenticated identity. The
// identity never comes from the CSR. Each identity is rate limited (a token
// bucket, RateLimit), and every refusal is logged and counted by reason. The package is kept apart from package ca
// so the signing core stays free of gRPC.
package csr
