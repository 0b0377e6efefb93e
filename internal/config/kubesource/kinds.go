package kubesource

import (
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/zmesh/zmesh/internal/config"
)

// istioKind is an Istio kind zmesh reads and the resource it is watched
// through.
type istioKind struct {
	kind config.Kind
	gvr  schema.GroupVersionResource
}

// istioKinds are watched at version v1, the storage version of Istio's
// CRDs since 1.22. Objects written through v1beta1 (or v1alpha3) are served
// at v1 by the apiserver, with the same spec: the versions share one
// schema, and Kubernetes keeps no record of the version a client used, so
// every resource from the cluster reports apiVersion GROUP/v1.
var istioKinds = []istioKind{
	{config.KindAuthorizationPolicy, schema.GroupVersionResource{Group: "security.istio.io", Version: "v1", Resource: "authorizationpolicies"}},
	{config.KindPeerAuthentication, schema.GroupVersionResource{Group: "security.istio.io", Version: "v1", Resource: "peerauthentications"}},
	{config.KindRequestAuthentication, schema.GroupVersionResource{Group: "security.istio.io", Version: "v1", Resource: "requestauthentications"}},
	{config.KindServiceEntry, schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "serviceentries"}},
	{config.KindWorkloadEntry, schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "workloadentries"}},
	{config.KindTelemetry, schema.GroupVersionResource{Group: "telemetry.istio.io", Version: "v1", Resource: "telemetries"}},
	{config.KindDestinationRule, schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "destinationrules"}},
	{config.KindVirtualService, schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "virtualservices"}},
	{config.KindSidecar, schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "sidecars"}},
	{config.KindGateway, schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "gateways"}},
}
