package inject

import (
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// WebhookConfigurationName is the MutatingWebhookConfiguration that sends
// pod creations to the injector. `zmesh install` creates it with a service
// client config; `zmesh up --kubeconfig` replaces it with a url one.
const WebhookConfigurationName = "zmesh-sidecar-injector"

// WebhookPath is where the injector serves admission reviews.
const WebhookPath = "/inject"

// labelMetadataName is the label the apiserver sets on every namespace to
// its name.
const labelMetadataName = "kubernetes.io/metadata.name"

// WebhookConfiguration returns the MutatingWebhookConfiguration for these
// settings, the apiserver reaching the injector through client. It has
// Istio's four webhooks, with Istio's selectors, so that the apiserver
// sends exactly the pods Decide may inject:
//
//   - namespace: namespace istio-injection=enabled, pod not opted out;
//   - rev.namespace: namespace istio.io/rev=REVISION (no istio-injection);
//   - rev.object: unlabelled namespace, pod istio.io/rev=REVISION;
//   - object: unlabelled namespace, pod sidecar.istio.io/inject=true.
//
// Each excludes the ExcludedNamespaces. Every webhook has failurePolicy
// Fail: when the injector cannot be reached, pod creation in a mesh
// namespace fails with the apiserver's error instead of admitting a pod
// without a proxy, which in a STRICT namespace would be a workload cut off
// from the mesh, and under PERMISSIVE one that talks plaintext unseen.
// sideEffects None (the injector changes nothing but the reviewed pod, so
// dry-run requests are sent too); reinvocationPolicy Never: the patch
// depends only on the pod's labels and annotations, and the native
// sidecar serves containers that later webhooks add without a second
// pass.
func (s *Settings) WebhookConfiguration(client admissionregistrationv1.WebhookClientConfig) *admissionregistrationv1.MutatingWebhookConfiguration {
	notExcluded := metav1.LabelSelectorRequirement{Key: labelMetadataName, Operator: metav1.LabelSelectorOpNotIn, Values: s.ExcludedNamespaces}
	absent := func(k string) metav1.LabelSelectorRequirement {
		return metav1.LabelSelectorRequirement{Key: k, Operator: metav1.LabelSelectorOpDoesNotExist}
	}
	in := func(k string, v ...string) metav1.LabelSelectorRequirement {
		return metav1.LabelSelectorRequirement{Key: k, Operator: metav1.LabelSelectorOpIn, Values: v}
	}
	notIn := func(k string, v ...string) metav1.LabelSelectorRequirement {
		return metav1.LabelSelectorRequirement{Key: k, Operator: metav1.LabelSelectorOpNotIn, Values: v}
	}
	hook := func(name string, ns, obj []metav1.LabelSelectorRequirement) admissionregistrationv1.MutatingWebhook {
		return admissionregistrationv1.MutatingWebhook{
			Name:         name + ".sidecar-injector.zmesh.dev",
			ClientConfig: client,
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule: admissionregistrationv1.Rule{
					APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"},
					Scope: ptr.To(admissionregistrationv1.NamespacedScope),
				},
			}},
			FailurePolicy:           ptr.To(admissionregistrationv1.Fail),
			MatchPolicy:             ptr.To(admissionregistrationv1.Equivalent),
			NamespaceSelector:       &metav1.LabelSelector{MatchExpressions: append(ns, notExcluded)},
			ObjectSelector:          &metav1.LabelSelector{MatchExpressions: obj},
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
			TimeoutSeconds:          ptr.To[int32](10),
			AdmissionReviewVersions: []string{"v1"},
			ReinvocationPolicy:      ptr.To(admissionregistrationv1.NeverReinvocationPolicy),
		}
	}
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingWebhookConfiguration"},
		ObjectMeta: metav1.ObjectMeta{Name: WebhookConfigurationName, Labels: map[string]string{"app.kubernetes.io/part-of": "zmesh"}},
		Webhooks: []admissionregistrationv1.MutatingWebhook{
			hook("namespace",
				[]metav1.LabelSelectorRequirement{in(LabelInjection, "enabled")},
				[]metav1.LabelSelectorRequirement{notIn(LabelInject, "false")}),
			hook("rev.namespace",
				[]metav1.LabelSelectorRequirement{in(LabelRevision, s.Revision), absent(LabelInjection)},
				[]metav1.LabelSelectorRequirement{notIn(LabelInject, "false")}),
			hook("rev.object",
				[]metav1.LabelSelectorRequirement{absent(LabelRevision), absent(LabelInjection)},
				[]metav1.LabelSelectorRequirement{notIn(LabelInject, "false"), in(LabelRevision, s.Revision)}),
			hook("object",
				[]metav1.LabelSelectorRequirement{absent(LabelRevision), absent(LabelInjection)},
				[]metav1.LabelSelectorRequirement{in(LabelInject, "true"), absent(LabelRevision)}),
		},
	}
}
