package kubesource

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/zmesh/zmesh/internal/config"
)

// lastAppliedAnnotation is where client-side `kubectl apply` keeps the
// whole object it applied. It says nothing about the policy, and keeping
// it would make an applied object's snapshot version differ from the same
// YAML read from a file.
const lastAppliedAnnotation = "kubectl.kubernetes.io/last-applied-configuration"

// object is what the source keeps of one Istio object: the metadata that
// policy semantics depend on and the spec as JSON, not the apiserver's
// whole object (as unstructured maps, a policy costs several times its
// JSON size). Informers cache it in place of the object (see trimIstio).
type object struct {
	metav1.TypeMeta
	metav1.ObjectMeta // name, namespace, uid, resourceVersion, labels, annotations
	Spec              json.RawMessage
}

// DeepCopyObject implements runtime.Object. An object is never modified
// once made, so the copy shares its maps and spec.
func (o *object) DeepCopyObject() runtime.Object {
	c := *o
	return &c
}

// toObject keeps of u what convert reads. The kubectl last-applied
// annotation is dropped here, so it is neither kept nor versioned.
func toObject(u *unstructured.Unstructured) (*object, error) {
	o := &object{
		TypeMeta: metav1.TypeMeta{APIVersion: u.GetAPIVersion(), Kind: u.GetKind()},
		ObjectMeta: metav1.ObjectMeta{
			Name: u.GetName(), Namespace: u.GetNamespace(), UID: u.GetUID(), ResourceVersion: u.GetResourceVersion(),
			Labels: u.GetLabels(), Annotations: u.GetAnnotations(),
		},
	}
	delete(o.Annotations, lastAppliedAnnotation) // GetAnnotations returns a copy
	if len(o.Annotations) == 0 {
		o.Annotations = nil
	}
	if spec, ok := u.Object["spec"]; ok {
		js, err := json.Marshal(spec)
		if err != nil {
			return nil, fmt.Errorf("kubesource: %s %s/%s: encode spec: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
		}
		o.Spec = js
	}
	return o, nil
}

// convert turns one Istio object served by the apiserver into a validated
// config.Resource. It rebuilds the object's Kubernetes envelope (apiVersion,
// kind, name, namespace, labels, annotations and spec; status and the
// server's metadata are dropped) and hands it to config.Parse and
// config.Validate, the path a file takes, so a cluster object and a file
// with the same content give the same Resource. kind is the kind the
// object was watched as, used when the object does not say.
func convert(o *object, kind config.Kind) (config.Resource, []config.Warning, error) {
	apiVersion, k := o.APIVersion, config.Kind(o.Kind)
	if k == "" {
		k = kind
	}
	fail := func(err error) (config.Resource, []config.Warning, error) {
		return config.Resource{}, nil, &config.SourceError{Kind: k, Key: o.Namespace + "/" + o.Name, Err: err}
	}
	meta := map[string]any{"name": o.Name, "namespace": o.Namespace}
	if len(o.Labels) > 0 {
		meta["labels"] = o.Labels
	}
	if a := o.Annotations; len(a) > 0 {
		a = maps.Clone(a)
		delete(a, lastAppliedAnnotation)
		if len(a) > 0 {
			meta["annotations"] = a
		}
	}
	env := map[string]any{"apiVersion": apiVersion, "kind": string(k), "metadata": meta}
	if o.Spec != nil {
		env["spec"] = o.Spec
	}
	js, err := json.Marshal(env)
	if err != nil {
		return fail(fmt.Errorf("encode: %w", err))
	}
	rs, warnings, err := config.Parse(js, source(k, o.Namespace, o.Name))
	if err != nil {
		return config.Resource{}, nil, unsourced(err)
	}
	if len(rs) != 1 {
		// A known kind always parses to one resource; anything else means
		// the object is not what its informer watches.
		return fail(fmt.Errorf("apiVersion %s kind %s is not a kind zmesh reads", apiVersion, k))
	}
	r := rs[0]
	r.Source = source(k, o.Namespace, o.Name)
	if err := config.Validate(r); err != nil {
		return config.Resource{}, warnings, unsourced(err)
	}
	return r, warnings, nil
}

// source names an object in messages, in place of a file name.
func source(kind config.Kind, ns, name string) string {
	return "kubernetes:" + string(kind) + "/" + ns + "/" + name
}

// unsourced drops the Source of a *config.SourceError whose Kind is known:
// for a cluster object, "AuthorizationPolicy NS/NAME" already says where
// it is, and config.Parse's "SOURCE#1" would only repeat it.
func unsourced(err error) error {
	var se *config.SourceError
	if errors.As(err, &se) && se.Kind != "" && se.Key != "" {
		se.Source = ""
	}
	return err
}
