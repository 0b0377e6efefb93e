// Package labelsel decides whether a label selector (Kubernetes'
// matchLabels, as Istio's workloadSelector, a Service's selector or a
// DestinationRule subset writes it) selects a set of labels. It is the one
// place zmesh answers that question, so that every resource kind selects
// workloads the same way and no caller passes the maps in the wrong order.
package labelsel

// Matches reports whether selector selects a workload with labels: every
// key of selector is in labels with the same value. An empty (or nil)
// selector selects every workload; callers for which "no selector" means
// something else (a Service without a selector selects no pod) check
// that first.
func Matches(selector, labels map[string]string) bool {
	for k, want := range selector {
		if got, ok := labels[k]; !ok || got != want {
			return false
		}
	}
	return true
}

// Workload is what a namespaced resource's selector is evaluated against:
// the namespace a workload runs in and its labels. The policy engines
// (authn, authz, policy, tracing) name it as their own Workload by alias,
// so that one value passes between them unconverted.
type Workload struct {
	Namespace string
	Labels    map[string]string
}
