// Package identity names workloads the way Istio does: a Kubernetes-style
// namespace and service account inside a trust domain, written as the SPIFFE
// ID spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT.
//
// The CA derives the ID it signs from an authenticated namespace and service
// account, the agent checks the ID of the certificate it receives, and the
// authorization code compares peers by their principal (the ID without the
// "spiffe://" scheme). Keeping the one mapping here means those three can never
// disagree about what an identity looks like.
package identity
