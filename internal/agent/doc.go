// Package agent is the identity half of `zmesh proxy`, what Istio calls the
// istio-agent: it keeps the workload's X.509 SVID and trust bundle current.
//
// On Run it makes a fresh key in memory (never written to disk; ECDSA P-256
// by default, RSA 2048/3072 with Config.KeyType), asks the control plane's
// IstioCertificateService to sign it (authenticated by a bootstrap token the
// first time, by the current certificate afterwards) and renews at a fixed fraction of each certificate's lifetime. The schedule
// is the pure function RenewIn, so rotation is tested without sleeping
// through real lifetimes.
//
// The Agent is a go-spiffe x509svid.Source and x509bundle.Source: the proxy's
// TLS configuration (tlsconfig.GetCertificate(agent) and friends) reads the
// current SVID on every handshake, so a rotation swaps one pointer and never
// disturbs a connection already open.
//
// The trust bundle is replaced by the one each CA response carries (the last
// element of Istio's cert_chain, which may hold several roots) and by
// SetBundle: that is how a root rotation (see package ca) reaches proxies
// live. Subpackages serve the identity to local software: workloadapi (the
// SPIFFE Workload API) and sds (Envoy's SDS), both on unix sockets guarded
// by localsock.
package agent
