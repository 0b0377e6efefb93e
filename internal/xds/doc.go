// Package xds decides what each proxy is told. Build derives, from a config
// Snapshot and the registry's services, the View of one proxy: only the
// policies that select its workload and the services it may call. Encode
// and Decode carry a View over the xDS transport as Istio does for config:
// istio.io/api messages wrapped in MCP Resources, one type URL per kind.
//
// This package is pure: no sockets, no gRPC, no clocks. The stream lives in
// xds/server (control plane) and xds/client (proxy).
package xds
