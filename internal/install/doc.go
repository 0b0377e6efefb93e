// Package install produces the Kubernetes objects that run zmesh in a
// cluster (`zmesh install`), prints them (`--dry-run`), applies them with
// server-side apply, and removes them (`zmesh uninstall`).
//
// The objects are built as Go values from client-go's types, so that a
// field name cannot be misspelt, then handled as unstructured objects so
// that Istio's CRDs, carried unchanged as YAML, go through the same path.
package install
