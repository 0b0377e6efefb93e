package kubecrd

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
)

//go:embed istio-crds.gen.yaml
var crdYAML []byte

// GVR is the resource of CustomResourceDefinitions.
var GVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// FieldManager is the server-side apply field manager Apply uses, so that
// `kubectl get --show-managed-fields` says who wrote the CRDs.
const FieldManager = "zmesh"

// YAML returns Istio's CRDs as one multi-document YAML stream: the
// dependency's file, unchanged, below a comment header. The caller must not
// modify it.
func YAML() []byte { return crdYAML }

// Objects returns Istio's CRDs decoded, one object per document, in the
// file's order. Each call returns fresh objects the caller may modify.
func Objects() ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(crdYAML), 64<<10)
	var out []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, fmt.Errorf("kubecrd: decode: %w", err)
		}
		if len(m) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		if u.GetKind() != "CustomResourceDefinition" || u.GetName() == "" {
			return nil, fmt.Errorf("kubecrd: unexpected document %s %q", u.GetKind(), u.GetName())
		}
		out = append(out, u)
	}
}

// Names returns the names of Istio's CRDs (plural.group), sorted.
func Names() ([]string, error) {
	objs, err := Objects()
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(objs))
	for _, o := range objs {
		names = append(names, o.GetName())
	}
	slices.Sort(names)
	return names, nil
}

// Apply creates or updates every Istio CRD with server-side apply (field
// manager FieldManager, taking over fields others set, as `kubectl apply
// --server-side --force-conflicts` would), then waits until every one is
// Established, so that Istio resources can be created as soon as it
// returns. It returns ctx's error if that takes longer than ctx allows.
func Apply(ctx context.Context, client dynamic.Interface) error {
	objs, err := Objects()
	if err != nil {
		return err
	}
	names := make([]string, 0, len(objs))
	for _, o := range objs {
		if _, err := client.Resource(GVR).Apply(ctx, o.GetName(), o, metav1.ApplyOptions{FieldManager: FieldManager, Force: true}); err != nil {
			return fmt.Errorf("kubecrd: apply %s: %w", o.GetName(), err)
		}
		names = append(names, o.GetName())
	}
	return WaitEstablished(ctx, client, names...)
}

// establishedPoll is how often WaitEstablished looks again. The apiserver
// establishes a new CRD within a second or so; a watch would save little.
const establishedPoll = 200 * time.Millisecond

// WaitEstablished waits until each named CRD exists and has the condition
// Established=True: the apiserver then serves its resources. It returns
// ctx's error, naming the CRDs still waited for, if ctx ends first.
func WaitEstablished(ctx context.Context, client dynamic.Interface, names ...string) error {
	t := time.NewTicker(establishedPoll)
	defer t.Stop()
	missing := names
	for {
		list, err := client.Resource(GVR).List(ctx, metav1.ListOptions{})
		if err == nil {
			established := map[string]bool{}
			for i := range list.Items {
				if isEstablished(&list.Items[i]) {
					established[list.Items[i].GetName()] = true
				}
			}
			missing = missing[:0:0]
			for _, n := range names {
				if !established[n] {
					missing = append(missing, n)
				}
			}
			if len(missing) == 0 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kubecrd: CRDs not established: %v: %w", missing, ctx.Err())
		case <-t.C:
		}
	}
}

// isEstablished reports whether a CRD's status holds Established=True.
func isEstablished(crd *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
	for _, c := range conds {
		m, ok := c.(map[string]any)
		if ok && m["type"] == "Established" && m["status"] == "True" {
			return true
		}
	}
	return false
}
