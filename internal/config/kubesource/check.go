package kubesource

import (
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/zmesh/zmesh/internal/config"
)

// Check reads one Istio object, as JSON in any version Istio's CRDs
// serve, the way the source reads it from the cluster (the same
// conversion, parse and validation), so that a validating admission
// webhook refuses exactly what the control plane would leave out. read is
// false, with no error, for an object of a kind zmesh does not read
// (EnvoyFilter, WasmPlugin, ...): zmesh has nothing to say about it.
func Check(raw []byte) (read bool, warnings []config.Warning, err error) {
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(raw); err != nil {
		return false, nil, fmt.Errorf("kubesource: decode object: %w", err)
	}
	kind, ok := readKind(u.GroupVersionKind())
	if !ok {
		return false, nil, nil
	}
	o, err := toObject(u)
	if err != nil {
		return true, nil, err
	}
	_, warnings, err = convert(o, kind)
	return true, warnings, err
}

// readKind is the kind zmesh reads that gvk names, whatever its version.
func readKind(gvk schema.GroupVersionKind) (config.Kind, bool) {
	for _, k := range istioKinds {
		if k.gvr.Group == gvk.Group && string(k.kind) == gvk.Kind {
			return k.kind, true
		}
	}
	return "", false
}
