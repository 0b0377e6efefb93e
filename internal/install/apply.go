package install

import (
	"context"
	"fmt"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/utils/ptr"

	"github.com/zmesh/zmesh/internal/kubecrd"
)

// resources maps the kinds install creates to their API resources. A
// fixed table instead of discovery: install creates these kinds and no
// others, and an unknown kind is a bug, not something to look up.
var resources = map[schema.GroupVersionKind]schema.GroupVersionResource{
	{Group: "apiextensions.k8s.io", Version: "v1", Kind: "CustomResourceDefinition"}:               {Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"},
	{Version: "v1", Kind: "Namespace"}:                                                             {Version: "v1", Resource: "namespaces"},
	{Version: "v1", Kind: "ServiceAccount"}:                                                        {Version: "v1", Resource: "serviceaccounts"},
	{Version: "v1", Kind: "ConfigMap"}:                                                             {Version: "v1", Resource: "configmaps"},
	{Version: "v1", Kind: "Service"}:                                                               {Version: "v1", Resource: "services"},
	{Group: "apps", Version: "v1", Kind: "Deployment"}:                                             {Group: "apps", Version: "v1", Resource: "deployments"},
	{Group: "policy", Version: "v1", Kind: "PodDisruptionBudget"}:                                  {Group: "policy", Version: "v1", Resource: "poddisruptionbudgets"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "ClusterRole"}:                       {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "ClusterRoleBinding"}:                {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterrolebindings"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "Role"}:                              {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "roles"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "RoleBinding"}:                       {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "rolebindings"},
	{Group: "admissionregistration.k8s.io", Version: "v1", Kind: "MutatingWebhookConfiguration"}:   {Group: "admissionregistration.k8s.io", Version: "v1", Resource: "mutatingwebhookconfigurations"},
	{Group: "admissionregistration.k8s.io", Version: "v1", Kind: "ValidatingWebhookConfiguration"}: {Group: "admissionregistration.k8s.io", Version: "v1", Resource: "validatingwebhookconfigurations"},
}

func client(dyn dynamic.Interface, o *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	gvr, ok := resources[o.GroupVersionKind()]
	if !ok {
		return nil, fmt.Errorf("install: no resource known for %s", o.GroupVersionKind())
	}
	if ns := o.GetNamespace(); ns != "" {
		return dyn.Resource(gvr).Namespace(ns), nil
	}
	return dyn.Resource(gvr), nil
}

// Describe names an object as install's output does: "Kind name" or
// "Kind namespace/name".
func Describe(o *unstructured.Unstructured) string {
	if ns := o.GetNamespace(); ns != "" {
		return o.GetKind() + " " + ns + "/" + o.GetName()
	}
	return o.GetKind() + " " + o.GetName()
}

// Apply creates or updates objs in order with server-side apply (field
// manager zmesh, taking over fields another manager set, as a re-install
// must). Applying the same objects twice changes nothing. done, when not
// nil, is called after each object. The CRDs among objs are waited for
// until the apiserver serves them (condition Established) before the
// next object of another kind: the control plane started by the
// Deployment reads Istio's kinds at once, and on a fresh cluster would
// otherwise find them not served yet and exit.
func Apply(ctx context.Context, dyn dynamic.Interface, objs []*unstructured.Unstructured, done func(*unstructured.Unstructured)) error {
	var crds []string // applied, not yet waited for
	for _, o := range objs {
		if o.GetKind() != crdKind && len(crds) > 0 {
			if err := waitEstablished(ctx, dyn, crds); err != nil {
				return err
			}
			crds = nil
		}
		if o.GetKind() == crdKind {
			crds = append(crds, o.GetName())
		}
		c, err := client(dyn, o)
		if err != nil {
			return err
		}
		if _, err := c.Apply(ctx, o.GetName(), o, metav1.ApplyOptions{FieldManager: FieldManager, Force: true}); err != nil {
			return fmt.Errorf("install: apply %s: %w", Describe(o), err)
		}
		if done != nil {
			done(o)
		}
	}
	if len(crds) > 0 {
		return waitEstablished(ctx, dyn, crds)
	}
	return nil
}

const crdKind = "CustomResourceDefinition"

// establishTimeout bounds the wait for applied CRDs to be served; the
// apiserver takes well under a second.
const establishTimeout = time.Minute

func waitEstablished(ctx context.Context, dyn dynamic.Interface, names []string) error {
	ctx, cancel := context.WithTimeout(ctx, establishTimeout)
	defer cancel()
	if err := kubecrd.WaitEstablished(ctx, dyn, names...); err != nil {
		return fmt.Errorf("install: %w", err)
	}
	return nil
}

// Delete removes objs in reverse order, the webhook configuration first,
// so pods stop being sent to a control plane about to go. Without purge
// it keeps the CRDs (deleting them deletes every Istio resource in the
// cluster) and the namespace (it holds the CA's root key in
// istio-ca-secret or cacerts, which install did not create: a later
// install keeps the mesh's identities). An object already gone is not an
// error. done, when not nil, is called for each object removed.
func Delete(ctx context.Context, dyn dynamic.Interface, objs []*unstructured.Unstructured, purge bool, done func(*unstructured.Unstructured)) error {
	for _, o := range slices.Backward(objs) {
		if !purge && (o.GetKind() == crdKind || o.GetKind() == "Namespace") {
			continue
		}
		c, err := client(dyn, o)
		if err != nil {
			return err
		}
		err = c.Delete(ctx, o.GetName(), metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationBackground)})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("install: delete %s: %w", Describe(o), err)
		}
		if done != nil {
			done(o)
		}
	}
	return nil
}
