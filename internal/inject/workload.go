package inject

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// canonical returns the pod's canonical service name and revision, as
// Istio derives them: the canonical-name label, else app.kubernetes.io/name,
// else app, else the workload's name; the canonical-revision label, else
// app.kubernetes.io/version, else version, else "latest".
func canonical(pod *corev1.Pod) (name, rev string) {
	l := pod.Labels
	name = first(l[LabelCanonicalName], l["app.kubernetes.io/name"], l["app"])
	if name == "" {
		name = labelValue(workloadName(pod))
	}
	rev = first(l[LabelCanonicalRevision], l["app.kubernetes.io/version"], l["version"], "latest")
	return name, rev
}

func first(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// workloadName is the name of what created the pod: a Deployment (its
// ReplicaSet's name less the pod-template-hash), a CronJob (its Job's name
// less the schedule suffix), another controller, or else the pod itself.
// At admission a pod from a controller has only a generateName.
func workloadName(pod *corev1.Pod) string {
	for _, ref := range pod.OwnerReferences {
		if ref.Controller == nil || !*ref.Controller {
			continue
		}
		switch hash := pod.Labels["pod-template-hash"]; {
		case ref.Kind == "ReplicaSet" && hash != "" && strings.HasSuffix(ref.Name, "-"+hash):
			return strings.TrimSuffix(ref.Name, "-"+hash)
		case ref.Kind == "Job":
			// A CronJob names its Jobs NAME-<scheduled minute>, 8 to 10
			// digits, as Istio's heuristic has it.
			if i := strings.LastIndexByte(ref.Name, '-'); i > 0 && isDigits(ref.Name[i+1:]) && len(ref.Name)-i-1 >= 8 && len(ref.Name)-i-1 <= 10 {
				return ref.Name[:i]
			}
		}
		return ref.Name
	}
	if pod.Name != "" {
		return pod.Name
	}
	if n := strings.TrimRight(pod.GenerateName, "-"); n != "" {
		return n
	}
	return "unknown"
}

func isDigits(s string) bool {
	return s != "" && strings.TrimLeft(s, "0123456789") == ""
}

// labelValue shortens an object name (up to 253 characters) to a valid
// label value (63), ending in an alphanumeric character.
func labelValue(s string) string {
	if len(s) > 63 {
		s = s[:63]
	}
	return strings.TrimRight(s, "-._")
}
