// Package client is the proxy's end of the config stream: it registers the
// proxy's workload with the control plane over delta ADS, assembles the
// resources it receives into an xds.View, and hands each complete new view
// to the proxy. A view the proxy rejects is NACKed and the proxy keeps its
// last good one; when the control plane is away the proxy keeps serving
// with what it has and the client reconnects with backoff.
package client
