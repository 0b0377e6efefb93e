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
// A destination may name a DestinationRule subset. Subsets are resolved
// at compile time through Config.Subsets into a label filter on the
// destination host's endpoints; an unresolved subset makes the
// destination fail closed (the proxy answers 503), never fall back to
// every endpoint.
package route
