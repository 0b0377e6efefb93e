package inject

import (
	"fmt"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// TestWebhookSelectorsAgreeWithDecide evaluates the four webhooks'
// selectors, as the apiserver does, over every combination of the labels
// that matter, and checks that at most one webhook matches, and that one
// matches exactly when Decide injects: the apiserver never skips a pod
// Decide would inject (which would admit it without a proxy) nor calls
// the webhook twice.
func TestWebhookSelectorsAgreeWithDecide(t *testing.T) {
	s := testSettings(t)
	cfg := s.WebhookConfiguration(admissionregistrationv1.WebhookClientConfig{URL: ptrTo("https://127.0.0.1/inject")})
	type sel struct{ ns, obj labels.Selector }
	var sels []sel
	for _, w := range cfg.Webhooks {
		ns, err := metav1.LabelSelectorAsSelector(w.NamespaceSelector)
		if err != nil {
			t.Fatal(err)
		}
		obj, err := metav1.LabelSelectorAsSelector(w.ObjectSelector)
		if err != nil {
			t.Fatal(err)
		}
		sels = append(sels, sel{ns, obj})
	}
	nsLabels := []map[string]string{
		{}, {LabelInjection: "enabled"}, {LabelInjection: "disabled"}, {LabelInjection: "true"},
		{LabelRevision: "default"}, {LabelRevision: "canary"},
		{LabelInjection: "enabled", LabelRevision: "canary"}, {LabelInjection: "disabled", LabelRevision: "default"},
	}
	podLabels := []map[string]string{
		{}, {LabelInject: "true"}, {LabelInject: "false"}, {LabelInject: "False"}, {LabelInject: "yes"},
		{LabelRevision: "default"}, {LabelRevision: "canary"},
		{LabelInject: "true", LabelRevision: "default"}, {LabelInject: "true", LabelRevision: "canary"},
		{LabelInject: "false", LabelRevision: "default"},
	}
	checked := 0
	for _, nsName := range []string{"shop", "kube-system", "istio-system"} {
		for _, nl := range nsLabels {
			for _, pl := range podLabels {
				full := map[string]string{labelMetadataName: nsName}
				for k, v := range nl {
					full[k] = v
				}
				matched := 0
				for _, s := range sels {
					if s.ns.Matches(labels.Set(full)) && s.obj.Matches(labels.Set(pl)) {
						matched++
					}
				}
				pod := corev1.Pod{}
				pod.Labels = pl
				d, err := s.Decide(&pod, Namespace{Name: nsName, Labels: nl})
				name := fmt.Sprintf("ns %s %v, pod %v", nsName, nl, pl)
				if matched > 1 {
					t.Errorf("%s: %d webhooks match", name, matched)
				}
				if err == nil && d.Inject && matched == 0 {
					t.Errorf("%s: Decide injects (%s) but no webhook is called", name, d.Reason)
				}
				if matched == 1 && err == nil && !d.Inject && !isOptOut(pl) {
					t.Errorf("%s: the webhook is called but Decide does not inject (%s)", name, d.Reason)
				}
				checked++
			}
		}
	}
	t.Logf("%d combinations", checked)
}

// isOptOut is a pod label opt-out that a selector cannot see (any
// spelling but "false"); the webhook is called and Decide declines.
func isOptOut(pl map[string]string) bool {
	v, ok := pl[LabelInject]
	return ok && v != "false" && v != "true" && v != ""
}

func ptrTo[T any](v T) *T { return &v }

func TestWebhookConfigurationFailsClosed(t *testing.T) {
	s := testSettings(t)
	cfg := s.WebhookConfiguration(admissionregistrationv1.WebhookClientConfig{})
	if cfg.Name != WebhookConfigurationName || len(cfg.Webhooks) != 4 {
		t.Fatalf("configuration %s with %d webhooks", cfg.Name, len(cfg.Webhooks))
	}
	for _, w := range cfg.Webhooks {
		if *w.FailurePolicy != admissionregistrationv1.Fail {
			t.Errorf("%s: failurePolicy %s, want Fail", w.Name, *w.FailurePolicy)
		}
		if *w.SideEffects != admissionregistrationv1.SideEffectClassNone {
			t.Errorf("%s: sideEffects %s", w.Name, *w.SideEffects)
		}
	}
}
