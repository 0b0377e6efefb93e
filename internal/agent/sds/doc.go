// Package sds serves Envoy's Secret Discovery Service
// (envoy.service.secret.v3) on a unix socket, so an Envoy next to the agent
// takes its mesh certificate and trust bundle from it, as it would from
// istio-agent.
//
// Secrets come from Sources. AgentSecrets serves the workload identity under
// Istio's resource names: "default" (the certificate chain and private key)
// and "ROOTCA" (the trust bundle). A FileSource serves certificates an
// operator mounts as files (a gateway's serving certificate, an egress
// client certificate) under configured names, and re-reads them when they
// change. Every stream is pushed again when a secret it asked for changes;
// the state-of-the-world StreamSecrets, the incremental DeltaSecrets and the
// unary FetchSecrets are all served. A NACK is logged and never answered
// with the same content again; Envoy keeps its last good secret meanwhile.
package sds
