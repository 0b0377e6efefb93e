package kubecluster

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/zmesh/zmesh/internal/kubecrd"
	"github.com/zmesh/zmesh/internal/meshdir"
)

// object is one resource of the mesh directory, with the API resource it
// is applied through and where it was read.
type object struct {
	obj    *unstructured.Unstructured
	gvr    schema.GroupVersionResource
	source string // FILE document N
}

// readDir reads the Istio resources of dir's YAML files (the files the
// control plane would watch: *.yaml, *.yml, not hidden), in file order.
// zmesh.dev documents are localmesh's and skipped; `kind: List` is
// expanded. A kind of no Istio CRD is an error: the control plane would
// not read it from the cluster, and applying something else (a
// Deployment, say) is not what `zmesh up` is for.
func readDir(dir string) ([]object, error) {
	files, err := meshdir.ReadFiles(dir)
	if err != nil {
		return nil, fmt.Errorf("kubecluster: %w", err)
	}
	kinds, err := istioResources()
	if err != nil {
		return nil, err
	}
	var out []object
	for _, f := range files {
		objs, err := parse(f.Data, filepath.Base(f.Path), kinds)
		if err != nil {
			return nil, err
		}
		out = append(out, objs...)
	}
	return out, nil
}

// parse decodes one file's documents into objects to apply.
func parse(data []byte, name string, kinds map[schema.GroupKind]crdResource) ([]object, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 64<<10)
	var out []object
	for i := 0; ; i++ {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, fmt.Errorf("kubecluster: %s document %d: %w", name, i, err)
		}
		if len(m) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		items := []*unstructured.Unstructured{u}
		if u.IsList() {
			l, err := u.ToList()
			if err != nil {
				return nil, fmt.Errorf("kubecluster: %s document %d: %w", name, i, err)
			}
			items = items[:0]
			for j := range l.Items {
				items = append(items, &l.Items[j])
			}
		}
		for _, it := range items {
			src := fmt.Sprintf("%s document %d", name, i)
			gvk := it.GroupVersionKind()
			if gvk.Group == "zmesh.dev" {
				continue
			}
			r, ok := kinds[gvk.GroupKind()]
			if !ok {
				return nil, fmt.Errorf("kubecluster: %s: %s %s is not an Istio kind; zmesh up applies Istio resources only", src, it.GetAPIVersion(), it.GetKind())
			}
			if !r.served[gvk.Version] {
				return nil, fmt.Errorf("kubecluster: %s: %s is not a version Istio's CRD serves for %s", src, it.GetAPIVersion(), it.GetKind())
			}
			if it.GetName() == "" {
				return nil, fmt.Errorf("kubecluster: %s: %s without a name", src, it.GetKind())
			}
			if it.GetNamespace() == "" {
				it.SetNamespace("default") // as the control plane reads it from a file
			}
			out = append(out, object{obj: it, gvr: gvk.GroupVersion().WithResource(r.plural), source: src})
		}
	}
}

// crdResource is what an Istio CRD says of its kind.
type crdResource struct {
	plural string
	served map[string]bool // versions
}

// istioResources maps every kind of Istio's CRDs (kubecrd) to its
// resource and served versions.
func istioResources() (map[schema.GroupKind]crdResource, error) {
	crds, err := kubecrd.Objects()
	if err != nil {
		return nil, err
	}
	out := map[schema.GroupKind]crdResource{}
	for _, crd := range crds {
		group, _, _ := unstructured.NestedString(crd.Object, "spec", "group")
		kind, _, _ := unstructured.NestedString(crd.Object, "spec", "names", "kind")
		plural, _, _ := unstructured.NestedString(crd.Object, "spec", "names", "plural")
		versions, _, _ := unstructured.NestedSlice(crd.Object, "spec", "versions")
		r := crdResource{plural: plural, served: map[string]bool{}}
		for _, v := range versions {
			vm, _ := v.(map[string]any)
			if name, _ := vm["name"].(string); name != "" && vm["served"] == true {
				r.served[name] = true
			}
		}
		out[schema.GroupKind{Group: group, Kind: kind}] = r
	}
	return out, nil
}
