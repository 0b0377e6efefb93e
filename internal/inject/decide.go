package inject

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Namespace is what injection needs to know of a pod's namespace.
type Namespace struct {
	Name   string
	Labels map[string]string
}

// Decision says whether a pod gets the sidecar, and why, for logs and the
// admission response.
type Decision struct {
	Inject bool
	Reason string
}

// Decide applies Istio's injection rules to pod in ns, in the order Istio's
// four webhooks and its injector apply them:
//
//   - never in an excluded namespace (kube-system, …, the control plane's),
//     never a hostNetwork pod (capture would rewrite the node's network),
//     never a pod that already has zmesh-proxy;
//   - never when the pod opts out (sidecar.istio.io/inject false, as a label
//     or, as older Istio charts set it, an annotation);
//   - namespace istio-injection=enabled: inject; istio-injection with any
//     other value ("disabled"): do not;
//   - else namespace istio.io/rev: inject if it names this control plane's
//     revision, not if it names another (another control plane owns it);
//   - else pod istio.io/rev: the same;
//   - else pod label sidecar.istio.io/inject=true: inject.
//
// The selectors of Webhooks send the apiserver's requests by the same
// rules, so the webhook is only called for pods Decide injects, bar the
// checks a label selector cannot express (hostNetwork, already injected,
// an annotation opt-out). A sidecar.istio.io/inject value that is neither
// true nor false (Istio also takes y/yes/on, n/no/off) is an error: a typo
// must not decide silently whether a pod is in the mesh.
func (s *Settings) Decide(pod *corev1.Pod, ns Namespace) (Decision, error) {
	if slices.Contains(s.ExcludedNamespaces, ns.Name) {
		return Decision{Reason: "namespace " + ns.Name + " is never injected"}, nil
	}
	if pod.Spec.HostNetwork {
		return Decision{Reason: "hostNetwork pod"}, nil
	}
	if hasContainer(pod, ProxyContainer) {
		return Decision{Reason: "already injected"}, nil
	}
	v, src, err := injectValue(pod)
	if err != nil {
		return Decision{}, err
	}
	if v == optOut {
		return Decision{Reason: src + " " + LabelInject + "=false"}, nil
	}
	sel, reason := s.selected(pod.Labels, ns.Labels)
	return Decision{Inject: sel, Reason: reason}, nil
}

// selected applies the label rules that the webhooks' selectors express.
func (s *Settings) selected(pod, ns map[string]string) (bool, string) {
	if v, ok := ns[LabelInjection]; ok {
		if v == "enabled" {
			return true, "namespace " + LabelInjection + "=enabled"
		}
		return false, fmt.Sprintf("namespace %s=%s", LabelInjection, v)
	}
	if rev, ok := ns[LabelRevision]; ok {
		return rev == s.Revision, fmt.Sprintf("namespace %s=%s", LabelRevision, rev)
	}
	if rev, ok := pod[LabelRevision]; ok {
		return rev == s.Revision, fmt.Sprintf("pod %s=%s", LabelRevision, rev)
	}
	if pod[LabelInject] == "true" {
		return true, "pod " + LabelInject + "=true"
	}
	return false, "namespace and pod not labelled for injection"
}

type injectSetting int

const (
	unset injectSetting = iota
	optIn
	optOut
)

// injectValue reads sidecar.istio.io/inject from the pod's labels, or else
// its annotations, as Istio does.
func injectValue(pod *corev1.Pod) (injectSetting, string, error) {
	src, v, ok := "label", "", false
	if v, ok = pod.Labels[LabelInject]; !ok {
		src = "annotation"
		if v, ok = pod.Annotations[LabelInject]; !ok {
			return unset, "", nil
		}
	}
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "":
		return unset, src, nil
	case "true", "y", "yes", "on":
		return optIn, src, nil
	case "false", "n", "no", "off":
		return optOut, src, nil
	}
	return unset, src, fmt.Errorf("%s %s=%q is neither true nor false", src, LabelInject, v)
}

func hasContainer(pod *corev1.Pod, name string) bool {
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range cs {
			if c.Name == name {
				return true
			}
		}
	}
	return false
}
