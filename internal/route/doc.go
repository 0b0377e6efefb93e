// Package route decides where a client proxy sends an HTTP request that a
// VirtualService governs: which http route matches it (first match wins),
// which weighted destination takes it, and what happens on the way
// (rewrite, redirect, direct response, header changes, fault injection,
// time-outs, retries, mirroring), with Istio's semantics.
//
// VirtualServices are compiled once per push (Compile) into a Table keyed
// by host; per request the proxy looks the host up, calls Match, and acts
// on the HTTPRoute it gets; a TCP stream or an app's own TLS goes through
// MatchTCP and MatchTLS (by port, destination subnet and SNI) to a
// weighted destination. Everything here is pure: randomness (weights,
// fault and mirror percentages) comes in as numbers from the caller, and
// no socket, clock or global is touched. The proxy does the I/O.
//
// A destination may name a DestinationRule subset. The route table
// carries the name only: the proxy resolves it against the rule that
// governs the host (internal/destrule), in the one place endpoints are
// chosen, and a subset no rule defines fails closed (503), never falls
// back to every endpoint.
package route
