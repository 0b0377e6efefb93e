package inject

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Probe rewriting, as Istio's injector does it.
//
// The kubelet probes an app container from the node, in plaintext, on the
// app's port: under STRICT mTLS the proxy refuses it (the kubelet has no
// mesh certificate), and the pod never becomes ready. So each app
// container's httpGet, tcpSocket and grpc probes are rewritten into an
// HTTP GET of /app-health/CONTAINER/livez|readyz|startupz on the proxy's
// app-health port (AppHealthPort, served by `zmesh proxy --app-health`
// and nothing else), and the original probes go to the proxy as Istio's
// ISTIO_KUBE_APP_PROBERS JSON, which it runs against the app from inside
// the pod. Exec probes run in the container and are left alone, as are
// probes whose named port the container does not declare (the kubelet
// could not resolve it either) and the few the proxy would refuse to run
// (see runnable), since one such probe in ISTIO_KUBE_APP_PROBERS would
// keep the proxy from starting. The pod annotation
// sidecar.istio.io/rewriteAppHTTPProbers: "false" turns the rewrite off.

// probeKinds ties a container's probe fields to the rewritten path's last
// element, in the order they are written.
var probeKinds = []struct {
	kind  string
	field string // JSON name in a container
	get   func(*corev1.Container) *corev1.Probe
}{
	{"livez", "livenessProbe", func(c *corev1.Container) *corev1.Probe { return c.LivenessProbe }},
	{"readyz", "readinessProbe", func(c *corev1.Container) *corev1.Probe { return c.ReadinessProbe }},
	{"startupz", "startupProbe", func(c *corev1.Container) *corev1.Probe { return c.StartupProbe }},
}

// appProber is one original probe in ISTIO_KUBE_APP_PROBERS, with its
// port resolved to a number (the proxy does not see container ports).
type appProber struct {
	HTTPGet        *corev1.HTTPGetAction   `json:"httpGet,omitempty"`
	TCPSocket      *corev1.TCPSocketAction `json:"tcpSocket,omitempty"`
	GRPC           *corev1.GRPCAction      `json:"grpc,omitempty"`
	TimeoutSeconds int32                   `json:"timeoutSeconds,omitempty"`
}

// AppHealthPath is the path a probe of container's kind (livez, readyz,
// startupz) is rewritten to.
func AppHealthPath(container, kind string) string {
	return "/app-health/" + container + "/" + kind
}

// rewriteProbes returns the patch that rewrites the pod's app probes and
// the ISTIO_KUBE_APP_PROBERS value that carries the originals; both empty
// when there is nothing to rewrite or the pod turned rewriting off. A
// rewriteAppHTTPProbers annotation that is not a boolean is an error: a
// typo must not decide silently whether the kubelet's probes work.
func rewriteProbes(pod *corev1.Pod) ([]Op, string, error) {
	if v, ok := pod.Annotations[AnnotationRewriteAppProbers]; ok {
		on, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return nil, "", fmt.Errorf("annotation %s=%q is neither true nor false", AnnotationRewriteAppProbers, v)
		}
		if !on {
			return nil, "", nil
		}
	}
	var ops []Op
	probers := map[string]appProber{}
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		for _, k := range probeKinds {
			orig := k.get(c)
			ap, ok := original(c, orig)
			if !ok {
				continue
			}
			path := AppHealthPath(c.Name, k.kind)
			probers[path] = ap
			ops = append(ops, Op{"add", fmt.Sprintf("/spec/containers/%d/%s", i, k.field), rewritten(orig, path)})
		}
	}
	if len(ops) == 0 {
		return nil, "", nil
	}
	js, err := json.Marshal(probers)
	if err != nil {
		return nil, "", err
	}
	return ops, string(js), nil
}

// original returns p as the proxy runs it, or false when p is not to be
// rewritten: no probe, an exec probe, or a port that does not resolve.
func original(c *corev1.Container, p *corev1.Probe) (appProber, bool) {
	if p == nil {
		return appProber{}, false
	}
	if p.TimeoutSeconds < 0 || p.TimeoutSeconds > maxProbeTimeout {
		return appProber{}, false
	}
	ap := appProber{TimeoutSeconds: p.TimeoutSeconds}
	switch {
	case p.HTTPGet != nil:
		port, ok := resolvePort(c, p.HTTPGet.Port)
		if !ok || !runnable(p.HTTPGet) {
			return appProber{}, false
		}
		a := p.HTTPGet.DeepCopy()
		a.Port = intstr.FromInt32(port)
		if !strings.HasPrefix(a.Path, "/") {
			a.Path = "/" + a.Path // what the kubelet requests
		}
		ap.HTTPGet = a
	case p.TCPSocket != nil:
		port, ok := resolvePort(c, p.TCPSocket.Port)
		if !ok {
			return appProber{}, false
		}
		a := p.TCPSocket.DeepCopy()
		a.Port = intstr.FromInt32(port)
		ap.TCPSocket = a
	case p.GRPC != nil:
		if p.GRPC.Port < 1 || p.GRPC.Port > 65535 {
			return appProber{}, false
		}
		ap.GRPC = p.GRPC.DeepCopy()
	default:
		return appProber{}, false
	}
	return ap, true
}

// maxProbeTimeout is the longest probe time-out the proxy runs, in
// seconds.
const maxProbeTimeout = 600

// runnable reports whether the proxy can send a: its scheme is HTTP or
// HTTPS and its headers are well formed (the apiserver checks header
// names only after admission, and the proxy refuses any bad one).
func runnable(a *corev1.HTTPGetAction) bool {
	switch a.Scheme {
	case "", corev1.URISchemeHTTP, corev1.URISchemeHTTPS:
	default:
		return false
	}
	for _, h := range a.HTTPHeaders {
		if !headerName(h.Name) || strings.ContainsFunc(h.Value, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }) {
			return false
		}
	}
	return true
}

// headerName reports whether s is an HTTP header name (an RFC 9110 token).
func headerName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || strings.IndexByte("\"(),/:;<=>?@[\\]{}", c) >= 0 {
			return false
		}
	}
	return true
}

// resolvePort returns a probe port as a number: itself, or the container
// port of that name.
func resolvePort(c *corev1.Container, port intstr.IntOrString) (int32, bool) {
	if port.Type == intstr.Int {
		return port.IntVal, port.IntVal >= 1 && port.IntVal <= 65535
	}
	for _, cp := range c.Ports {
		if cp.Name != "" && cp.Name == port.StrVal {
			return cp.ContainerPort, cp.ContainerPort >= 1 && cp.ContainerPort <= 65535
		}
	}
	return 0, false
}

// rewritten is p turned into the kubelet's GET of path on the app-health
// port, with p's timing and thresholds. The original's host and headers
// stay in ISTIO_KUBE_APP_PROBERS: the kubelet must probe this pod's IP,
// and the proxy sends the app the original's headers itself.
func rewritten(p *corev1.Probe, path string) *corev1.Probe {
	out := p.DeepCopy()
	out.ProbeHandler = corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
		Path:   path,
		Port:   intstr.FromInt32(AppHealthPort),
		Scheme: corev1.URISchemeHTTP,
	}}
	return out
}
