// Package source names where kubecrd's embedded CRDs come from, for the
// generator that copies them and the test that checks the copy.
package source

import "fmt"

// Module is the Go module that ships Istio's CRDs, and Path the file in it.
const (
	Module = "istio.io/api"
	Path   = "kubernetes/customresourcedefinitions.gen.yaml"
)

// File is the copy in package kubecrd.
const File = "istio-crds.gen.yaml"

// Header is the comment put above the unchanged copy of Path from Module
// at version.
func Header(version string) string {
	return fmt.Sprintf(`# Istio's CustomResourceDefinitions, copied unchanged by
# "go generate ./internal/kubecrd" from the Go module %s %s, file
# %s. Everything below this header is
# that file, byte for byte. Copyright Istio Authors; licensed under the
# Apache License, Version 2.0 (https://www.apache.org/licenses/LICENSE-2.0).
`, Module, version, Path)
}
