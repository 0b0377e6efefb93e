// Package kubesecret keeps the mesh CA's material in Kubernetes Secrets, as
// istiod does, so that a control plane on Kubernetes needs no volume, keeps
// its root across restarts, and runs as several replicas that all sign
// with one root.
//
// The signing CA is the operator's Secret cacerts when it exists (Istio's
// plug-in CA layout: ca-cert.pem, ca-key.pem, cert-chain.pem,
// root-cert.pem), else the self-signed root in istio-ca-secret (same keys,
// cert-chain.pem empty), created on first start. Creation is race-free
// without a lock: every replica that finds no Secret makes a root and
// creates the Secret, the API lets exactly one create succeed, and the
// others read the winner's (AlreadyExists, then Get). The bootstrap-token
// key lives in zmesh-token-key the same way. Every replica watches the
// Secrets and signs with what they hold (ca.Authority.SetMaterial);
// material that does not verify is refused and the last good kept. Bytes
// become signing material through ca.Material, the same parser the data
// dir's cacerts files go through.
package kubesecret
