// Package telemetry records what the proxy sees: Istio's standard request
// and TCP metrics (so existing Istio dashboards work unchanged), zmesh's own
// counters (denials by policy, TLS handshakes), and one access-log line per
// request.
//
// The proxy calls it once per request or connection, at the end, with the
// labels it already holds; label children are cached per label set so that
// recording costs a map lookup and a few atomic adds.
package telemetry
