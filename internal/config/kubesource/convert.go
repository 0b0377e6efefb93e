package kubesource

import (
	"encoding/json"
	"errors"
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/zmesh/zmesh/internal/config"
)

// lastAppliedAnnotation is where client-side `kubectl apply` keeps the
// whole object it applied. It says nothing about the policy, and keeping
// it would make an applied object's snapshot version differ from the same
// YAML read from a file.
const lastAppliedAnnotation = "kubectl.kubernetes.io/last-applied-configuration"

// convert turns one Istio object served by the apiserver into a validated
// config.Resource. It rebuilds the object's Kubernetes envelope (apiVersion,
// kind, name, namespace, labels, annotations and spec; status and the
// server's metadata are dropped) and hands it to config.Parse and
// config.Validate, the path a file takes, so a cluster object and a file
// with the same content give the same Resource. kind is the kind the
// object was watched as, used when the object does not say.
func convert(u *unstructured.Unstructured, kind config.Kind) (config.Resource, []config.Warning, error) {
	apiVersion, k := u.GetAPIVersion(), config.Kind(u.GetKind())
	if k == "" {
		k = kind
	}
	fail := func(err error) (config.Resource, []config.Warning, error) {
		return config.Resource{}, nil, &config.SourceError{Kind: k, Key: u.GetNamespace() + "/" + u.GetName(), Err: err}
	}
	meta := map[string]any{"name": u.GetName(), "namespace": u.GetNamespace()}
	if l := u.GetLabels(); len(l) > 0 {
		meta["labels"] = l
	}
	if a := u.GetAnnotations(); len(a) > 0 {
		delete(a, lastAppliedAnnotation) // GetAnnotations returns a copy
		if len(a) > 0 {
			meta["annotations"] = a
		}
	}
	env := map[string]any{"apiVersion": apiVersion, "kind": string(k), "metadata": meta}
	if spec, ok := u.Object["spec"]; ok {
		env["spec"] = spec
	}
	js, err := json.Marshal(env)
	if err != nil {
		return fail(fmt.Errorf("encode: %w", err))
	}
	rs, warnings, err := config.Parse(js, source(k, u.GetNamespace(), u.GetName()))
	if err != nil {
		return config.Resource{}, nil, unsourced(err)
	}
	if len(rs) != 1 {
		// A known kind always parses to one resource; anything else means
		// the object is not what its informer watches.
		return fail(fmt.Errorf("apiVersion %s kind %s is not a kind zmesh reads", apiVersion, k))
	}
	r := rs[0]
	r.Source = source(k, u.GetNamespace(), u.GetName())
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
