// Package kubecrd carries Istio's own CustomResourceDefinitions and puts
// them on a cluster. zmesh reads Istio's resources unchanged, so on
// Kubernetes it needs Istio's CRDs, not look-alikes: `zmesh install`
// applies them, and the Kubernetes tests apply them to a real apiserver.
//
// istio-crds.gen.yaml is the istio.io/api module's
// kubernetes/customresourcedefinitions.gen.yaml at the version in go.mod,
// copied unchanged (below a comment header that says so) by
// `go generate ./internal/kubecrd`. It is Istio's work, Copyright Istio
// Authors, under the Apache License 2.0; TestEmbeddedMatchesModule keeps
// the copy byte-identical to the dependency.
package kubecrd

//go:generate go run ./internal/gen
