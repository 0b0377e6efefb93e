package inject

import (
	"encoding/json"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Op is one JSON patch (RFC 6902) operation. Injection only adds.
type Op struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// Result is the outcome of Pod: the decision and, when injecting, the
// patch that turns the pod as given into an injected one.
type Result struct {
	Decision
	Patch []Op
}

// Status is the JSON of the sidecar.istio.io/status annotation, in
// Istio's shape, so tools that read it (istioctl, dashboards) find what
// was added.
type Status struct {
	InitContainers   []string `json:"initContainers"`
	Containers       []string `json:"containers"`
	Volumes          []string `json:"volumes"`
	ImagePullSecrets []string `json:"imagePullSecrets"`
	Revision         string   `json:"revision"`
}

// Pod decides whether pod, created in ns, gets the sidecar (see Decide)
// and returns the JSON patch that adds it. The patch only adds: it inserts
// zmesh-init and zmesh-proxy before the pod's own init containers (so
// those run with capture and the proxy already in place), appends the two
// volumes, and adds the labels and the status annotation. Of the user's
// containers it changes only the probes the kubelet could not pass under
// mTLS, which go through the proxy instead (see probes.go). An error is a pod that must be refused:
// a malformed annotation, or a name injection would add already taken.
// s must have been validated.
func (s *Settings) Pod(pod *corev1.Pod, ns Namespace) (Result, error) {
	d, err := s.Decide(pod, ns)
	if err != nil || !d.Inject {
		return Result{Decision: d}, err
	}
	if err := checkConflicts(pod); err != nil {
		return Result{}, err
	}
	capArgs, err := captureArgs(pod.Annotations)
	if err != nil {
		return Result{}, err
	}
	hold := true
	if v, ok := pod.Annotations[AnnotationProxyConfig]; ok {
		pc, err := ParseProxyConfig(v)
		if err != nil {
			return Result{}, fmt.Errorf("annotation %s: %w", AnnotationProxyConfig, err)
		}
		if h := pc.GetHoldApplicationUntilProxyStarts(); h != nil {
			hold = h.GetValue()
		}
	}

	probeOps, probers, err := rewriteProbes(pod)
	if err != nil {
		return Result{}, err
	}
	labels := s.labels(pod)
	initc := s.initContainer(capArgs)
	proxy := s.proxyContainer(labels, hold, probers)
	status, err := json.Marshal(Status{
		InitContainers: []string{InitContainer, ProxyContainer},
		Volumes:        []string{TokenVolume, RootCertVolume},
		Revision:       s.Revision,
	})
	if err != nil {
		return Result{}, err
	}

	var ops []Op
	ops = addToMap(ops, "/metadata/labels", pod.Labels, diffLabels(pod.Labels, labels))
	ops = addToMap(ops, "/metadata/annotations", pod.Annotations, podAnnotations(pod.Annotations, string(status)))
	if len(pod.Spec.InitContainers) == 0 {
		ops = append(ops, Op{"add", "/spec/initContainers", []corev1.Container{initc, proxy}})
	} else {
		ops = append(ops, Op{"add", "/spec/initContainers/0", initc}, Op{"add", "/spec/initContainers/1", proxy})
	}
	ops = append(ops, probeOps...)
	vols := volumes()
	if len(pod.Spec.Volumes) == 0 {
		ops = append(ops, Op{"add", "/spec/volumes", vols})
	} else {
		for _, v := range vols {
			ops = append(ops, Op{"add", "/spec/volumes/-", v})
		}
	}
	return Result{Decision: d, Patch: ops}, nil
}

// Prometheus' scrape annotations, which Istio's injector sets so that the
// sidecar's metrics are scraped from its status port (15020).
const (
	annotationScrape     = "prometheus.io/scrape"
	annotationScrapePort = "prometheus.io/port"
	annotationScrapePath = "prometheus.io/path"
	statusPort           = "15020"
	statusMetricsPath    = "/stats/prometheus"
)

// podAnnotations are the annotations injection adds: the status, and the
// scrape annotations pointing at the sidecar's metrics unless the pod
// names its own scrape (zmesh does not merge an app's metrics into the
// sidecar's as Istio can; a pod that is scraped keeps its settings).
func podAnnotations(have map[string]string, status string) map[string]string {
	out := map[string]string{AnnotationStatus: status}
	if _, own := have[annotationScrape]; !own {
		out[annotationScrape] = "true"
		out[annotationScrapePort] = statusPort
		out[annotationScrapePath] = statusMetricsPath
	}
	return out
}

// checkConflicts refuses a pod that already uses a name injection adds:
// the apiserver would refuse the patched pod with a less clear message, or
// worse, the pod would run someone else's container under our name.
func checkConflicts(pod *corev1.Pod) error {
	if hasContainer(pod, InitContainer) {
		return fmt.Errorf("pod already has a container named %s", InitContainer)
	}
	for _, v := range pod.Spec.Volumes {
		if v.Name == TokenVolume || v.Name == RootCertVolume {
			return fmt.Errorf("pod already has a volume named %s", v.Name)
		}
	}
	return nil
}

// diffLabels returns the entries of want that have differs from.
func diffLabels(have, want map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range want {
		if hv, ok := have[k]; !ok || hv != v {
			out[k] = v
		}
	}
	return out
}

// addToMap appends the ops that set entries in the map at path, whose
// current value is cur: the whole map when it is absent, else one op per
// key (an add replaces an existing member).
func addToMap(ops []Op, path string, cur, entries map[string]string) []Op {
	if len(entries) == 0 {
		return ops
	}
	if cur == nil {
		return append(ops, Op{"add", path, entries})
	}
	for _, k := range sortedKeys(entries) {
		ops = append(ops, Op{"add", path + "/" + escapePointer(k), entries[k]})
	}
	return ops
}

// escapePointer escapes a key for a JSON pointer (RFC 6901): "~" is "~0"
// and "/" is "~1".
func escapePointer(k string) string {
	return strings.ReplaceAll(strings.ReplaceAll(k, "~", "~0"), "/", "~1")
}
