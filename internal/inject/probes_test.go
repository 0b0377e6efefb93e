package inject

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/zmesh/zmesh/internal/proxy"
)

// appProbersOf returns the ISTIO_KUBE_APP_PROBERS value of the injected
// pod's proxy, "" when it has none.
func appProbersOf(t testing.TB, pod *corev1.Pod) string {
	t.Helper()
	for _, c := range pod.Spec.InitContainers {
		if c.Name != ProxyContainer {
			continue
		}
		for _, e := range c.Env {
			if e.Name == EnvAppProbers {
				return e.Value
			}
		}
	}
	return ""
}

// rewrittenPaths returns the app-health paths the pod's containers' probes
// now ask for.
func rewrittenPaths(pod *corev1.Pod) []string {
	var out []string
	for i := range pod.Spec.Containers {
		for _, k := range probeKinds {
			if p := k.get(&pod.Spec.Containers[i]); p != nil && p.HTTPGet != nil && p.HTTPGet.Port.IntValue() == AppHealthPort {
				out = append(out, p.HTTPGet.Path)
			}
		}
	}
	slices.Sort(out)
	return out
}

// TestRewrittenProbesReachTheProxy: every probe the injector rewrites has
// its original in ISTIO_KUBE_APP_PROBERS under the path the kubelet will
// ask for, in a form the proxy accepts (zmesh proxy parses the variable
// with proxy.ParseAppProbers and refuses to start on an error).
func TestRewrittenProbesReachTheProxy(t *testing.T) {
	s := testSettings(t)
	tc := loadCase(t, "testdata/pods/app-probes.yaml")
	res, err := s.Pod(&tc.Pod, Namespace{Name: tc.Namespace.Name, Labels: tc.Namespace.Labels})
	if err != nil || !res.Inject {
		t.Fatalf("Pod = %+v, %v", res, err)
	}
	patched := applyPatch(t, &tc.Pod, res.Patch)
	ap, err := proxy.ParseAppProbers([]byte(appProbersOf(t, patched)))
	if err != nil {
		t.Fatalf("the proxy refuses the injected probers: %v", err)
	}
	var paths []string
	for p := range ap {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	want := []string{"/app-health/grpc/livez", "/app-health/web/livez", "/app-health/web/readyz", "/app-health/web/startupz"}
	if got := rewrittenPaths(patched); !slices.Equal(got, want) || !slices.Equal(paths, want) {
		t.Fatalf("rewritten probes %v, probers %v, want %v", got, paths, want)
	}
	// Named ports resolved to the container's numbers.
	if got := ap["/app-health/web/readyz"].HTTPGet; got.Port != 8443 || got.Scheme != "HTTPS" || got.Path != "/ready" {
		t.Errorf("readyz original = %+v", got)
	}
	if got := ap["/app-health/web/startupz"].TCPSocket; got == nil || got.Port != 8080 {
		t.Errorf("startupz original = %+v", got)
	}
}

func TestRewriteAnnotation(t *testing.T) {
	pod := func(v string) *corev1.Pod {
		p := podWith(nil, map[string]string{AnnotationRewriteAppProbers: v})
		p.Spec.Containers[0].ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
			HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromInt32(8080)},
		}}
		return &p
	}
	for _, tc := range []struct {
		value   string
		rewrite bool
		err     bool
	}{
		{"true", true, false},
		{"false", false, false},
		{"FALSE", false, false},
		{" 0 ", false, false},
		{"1", true, false},
		{"", false, true},
		{"nope", false, true},
	} {
		ops, probers, err := rewriteProbes(pod(tc.value))
		if (err != nil) != tc.err || (len(ops) > 0) != tc.rewrite || (probers != "") != tc.rewrite {
			t.Errorf("%q: %d ops, probers %q, err %v; want rewrite %v, error %v", tc.value, len(ops), probers, err, tc.rewrite, tc.err)
		}
	}
	ops, _, err := rewriteProbes(&corev1.Pod{Spec: pod("true").Spec})
	if err != nil || len(ops) != 1 {
		t.Errorf("without the annotation: %d ops, %v; want the rewrite (Istio's default)", len(ops), err)
	}
}

// FuzzRewriteProbes checks that whatever ports, paths and names a pod's
// probes hold, injection refuses the pod or produces probers the proxy
// accepts, one for each rewritten probe.
func FuzzRewriteProbes(f *testing.F) {
	f.Add("web", "/healthz", "http", int32(8080), int32(8080), "X-Probe", "v", int32(1))
	f.Add("a", "", "", int32(0), int32(70000), "", "", int32(-1))
	f.Add("c", "no-slash", "named", int32(9090), int32(1), "Bad Header", "\x00", int32(100000))
	f.Fuzz(func(t *testing.T, name, path, portName string, httpPort, grpcPort int32, hName, hValue string, timeout int32) {
		s := testSettings(t)
		port := intstr.FromInt32(httpPort)
		if portName != "" {
			port = intstr.FromString(portName)
		}
		c := corev1.Container{Name: name, Image: "app", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: httpPort}}}
		c.LivenessProbe = &corev1.Probe{TimeoutSeconds: timeout, ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
			Path: path, Port: port, HTTPHeaders: []corev1.HTTPHeader{{Name: hName, Value: hValue}},
		}}}
		c.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: port}}}
		c.StartupProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: grpcPort}}}
		pod := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{c}}}
		res, err := s.Pod(pod, Namespace{Name: "shop", Labels: map[string]string{LabelInjection: "enabled"}})
		if err != nil || !res.Inject {
			return
		}
		patched := applyPatch(t, pod, res.Patch)
		js := appProbersOf(t, patched)
		ap, err := proxy.ParseAppProbers([]byte(js))
		if err != nil {
			// The apiserver validates the pod after the webhook: a
			// container name it would refuse reaches the proxy only
			// through a pod that never runs. Anything else must parse.
			if validContainerName(name) {
				t.Fatalf("the proxy refuses %s: %v", js, err)
			}
			return
		}
		if got := rewrittenPaths(patched); len(got) != len(ap) {
			t.Fatalf("%d probes rewritten, %d probers: %s", len(got), len(ap), js)
		}
	})
}

func validContainerName(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return s[0] != '-' && s[len(s)-1] != '-'
}
