// Package tracing is the pure part of zmesh's distributed tracing: trace
// context in the headers Envoy understands (W3C traceparent/tracestate and
// Zipkin's B3, multi-header and single-header), the sampling decision,
// span and request IDs, and the resolution of Istio's Telemetry tracing
// settings for one proxy. It does no I/O: the proxy reads and writes the
// headers, and the otlp subpackage exports the spans.
//
// The data flow: a client proxy continues the trace of the app's request
// (or starts one), sends the upstream its own span as parent; the server
// proxy continues that trace and hands the app its span as parent. Each
// proxy reports its span to the collector named by the mesh's
// extensionProviders, if the request is sampled.
package tracing
