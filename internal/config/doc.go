// Package config turns Istio's YAML resources into typed istio.io/api
// messages, validates them, and holds them in immutable versioned
// Snapshots. It is the first step of the data flow: everything the control
// plane pushes to proxies is derived from a Snapshot. It imports no network
// or Kubernetes packages.
package config
