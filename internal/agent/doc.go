// Package agent is the identity half of `zmesh proxy`, what Istio calls the
// istio-agent: it keeps the workload's X.509 SVID and trust bundle current.
//
// On Run it makes a fresh ECDSA P-256 key in memory (never written to disk),
// asks the control plane's IstioCertificateService to sign it (authenticated
// by a bootstrap token the first time, by the current certificate afterwards)
// and renews at a fixed fraction of each certificate's lifetime. The schedule
// is the pure function RenewIn, so rotation is tested without sleeping
// through real lifetimes.
//
// The Agent is a go-spiffe x509svid.Source and x509bundle.Source: the proxy's
// TLS configuration (tlsconfig.GetCertificate(agent) and friends) reads the
// current SVID on every handshake, so a rotation swaps one pointer and never
// disturbs a connection already open.
package agent
