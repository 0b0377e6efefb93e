package xds

import (
	networking "istio.io/api/networking/v1alpha3"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/labelsel"
)

// selectsGateway reports whether the Gateway r applies to a gateway proxy
// with labels: its selector's labels are a subset of them. As in Istio, a
// Gateway selects gateway proxies of every namespace, and one without a
// selector selects them all.
func selectsGateway(r config.Resource, labels map[string]string) bool {
	gw, ok := r.Spec.(*networking.Gateway)
	return ok && labelsel.Matches(gw.GetSelector(), labels)
}

// gatewayVirtualServiceFor reports whether the VirtualService r goes to
// a gateway proxy governed by gws: it is bound to one of them by name and
// exported to that Gateway's namespace (Istio's rule: a gateway sees the
// VirtualServices exported to its configuration's namespace).
func gatewayVirtualServiceFor(r config.Resource, gws []config.Resource) bool {
	vs, ok := r.Spec.(*networking.VirtualService)
	if !ok {
		return false
	}
	for _, g := range gws {
		if config.BindsGateway(vs, r.Namespace, g.Key()) && config.ExportedTo(vs.GetExportTo(), r.Namespace, g.Namespace) {
			return true
		}
	}
	return false
}

// boundToGateway reports whether the VirtualService r names a gateway
// other than "mesh".
func boundToGateway(r config.Resource) bool {
	vs, ok := r.Spec.(*networking.VirtualService)
	if !ok {
		return false
	}
	for _, g := range vs.GetGateways() {
		if g != config.GatewayMesh {
			return true
		}
	}
	return false
}
