package controlplane

import (
	"fmt"
	"math"

	"google.golang.org/protobuf/reflect/protoreflect"

	meshv1alpha1 "istio.io/api/mesh/v1alpha1"

	"github.com/zmesh/zmesh/internal/tracing"
	"github.com/zmesh/zmesh/internal/xds"
)

// meshTracing sets m's tracing defaults from mc: defaultProviders.tracing
// and defaultConfig.tracing.sampling, checking them and the opentelemetry
// providers as istiod does, so that a typo is refused here rather than
// leaving every proxy reporting to nowhere. It returns the fields of
// defaultConfig other than tracing.sampling, which zmesh does not use.
func meshTracing(m *xds.Mesh, mc *meshv1alpha1.MeshConfig) (ignored []string, err error) {
	for _, ep := range mc.GetExtensionProviders() {
		o := ep.GetOpentelemetry()
		if o == nil {
			continue
		}
		if o.GetService() == "" {
			return nil, fmt.Errorf("controlplane: mesh config extensionProviders %q: service is required", ep.GetName())
		}
		if _, ok := tracing.CollectorAddr(o.GetService(), o.GetPort()); !ok {
			return nil, fmt.Errorf("controlplane: mesh config extensionProviders %q: port must be 1-65535", ep.GetName())
		}
	}
	m.DefaultTracingProviders = mc.GetDefaultProviders().GetTracing()
	dc := mc.GetDefaultConfig()
	if dc == nil {
		return nil, nil
	}
	s := dc.GetTracing().GetSampling()
	if math.IsNaN(s) || s < 0 || s > 100 {
		return nil, fmt.Errorf("controlplane: mesh config defaultConfig.tracing.sampling %v is not between 0 and 100", s)
	}
	m.TracingSampling = s
	dc.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		if fd.JSONName() != "tracing" {
			ignored = append(ignored, "defaultConfig."+fd.JSONName())
		}
		return true
	})
	if t := dc.GetTracing(); t != nil {
		t.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
			if fd.JSONName() != "sampling" {
				ignored = append(ignored, "defaultConfig.tracing."+fd.JSONName())
			}
			return true
		})
	}
	return ignored, nil
}
