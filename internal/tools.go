//go:build tools

// Package tools pins modules that zmesh uses so that `go mod tidy` keeps them
// while the packages that import them are being written.
package tools

import (
	_ "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	_ "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	_ "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	_ "github.com/fsnotify/fsnotify"
	_ "github.com/lestrrat-go/jwx/v3/jwt"
	_ "github.com/prometheus/client_golang/prometheus/promhttp"
	_ "github.com/spf13/cobra"
	_ "github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	_ "github.com/spiffe/go-spiffe/v2/workloadapi"
	_ "go.uber.org/goleak"
	_ "golang.org/x/net/http2"
	_ "google.golang.org/grpc"
	_ "istio.io/api/mcp/v1alpha1"
	_ "istio.io/api/mesh/v1alpha1"
	_ "istio.io/api/networking/v1alpha3"
	_ "istio.io/api/security/v1"
	_ "istio.io/api/security/v1alpha1"
	_ "istio.io/api/security/v1beta1"
	_ "sigs.k8s.io/yaml"
)
