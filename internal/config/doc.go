// Package config turns Istio's YAML resources into typed istio.io/api
// messages, validates them, and holds them in immutable versioned
// Snapshots. It is the first step of the data flow: everything the control
// plane pushes to proxies is derived from a Snapshot.
//
// Parse decodes one YAML stream strictly (unknown fields are errors that
// name the field), Validate applies Istio's validation rules to one
// resource, and Load does both for a set of files, all or nothing (for
// `zmesh check`), and versions the result by content. Reload does the same
// resource by resource for sources that follow edits (config/filesource,
// and later the Kubernetes source): a rejected document is left out alone
// and what it defined keeps its last good version, so one bad resource
// cannot hold back every other edit. Nothing downstream sees a resource
// that did not pass validation. The package does no I/O and imports no
// network or Kubernetes packages.
package config
