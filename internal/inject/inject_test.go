package inject

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// testCase is one file of testdata/pods: a pod as the apiserver hands it
// to the webhook, and the labels of its namespace.
type testCase struct {
	Namespace struct {
		Name   string            `json:"name"`
		Labels map[string]string `json:"labels"`
	} `json:"namespace"`
	Pod corev1.Pod `json:"pod"`
}

func testSettings(t testing.TB) *Settings {
	t.Helper()
	s := &Settings{Image: "zmesh/zmesh:test"}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	return s
}

func loadCase(t *testing.T, path string) testCase {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var tc testCase
	if err := yaml.UnmarshalStrict(b, &tc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return tc
}

// applyPatch applies a JSON patch to pod as the apiserver would, through
// its JSON form.
func applyPatch(t testing.TB, pod *corev1.Pod, ops []Op) *corev1.Pod {
	t.Helper()
	doc, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(ops)
	if err != nil {
		t.Fatal(err)
	}
	p, err := jsonpatch.DecodePatch(raw)
	if err != nil {
		t.Fatalf("decode patch: %v", err)
	}
	out, err := p.Apply(doc)
	if err != nil {
		t.Fatalf("apply patch %s: %v", raw, err)
	}
	var patched corev1.Pod
	if err := json.Unmarshal(out, &patched); err != nil {
		t.Fatal(err)
	}
	return &patched
}

// TestPodGolden runs every pod of testdata/pods through Pod and compares
// the outcome (the decision, and the pod with the patch applied, or the
// refusal) with testdata/golden. Refresh with -update.
func TestPodGolden(t *testing.T) {
	s := testSettings(t)
	files, err := filepath.Glob("testdata/pods/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no test pods: %v", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		t.Run(name, func(t *testing.T) {
			tc := loadCase(t, f)
			res, err := s.Pod(&tc.Pod, Namespace{Name: tc.Namespace.Name, Labels: tc.Namespace.Labels})
			out := map[string]any{}
			switch {
			case err != nil:
				out["error"] = err.Error()
			case !res.Inject:
				out["inject"] = false
				out["reason"] = res.Reason
				if res.Patch != nil {
					t.Errorf("patch %v for a pod not injected", res.Patch)
				}
			default:
				out["inject"] = true
				out["reason"] = res.Reason
				patched := applyPatch(t, &tc.Pod, res.Patch)
				checkOnlyAdded(t, &tc.Pod, patched)
				out["pod"] = patched
			}
			got, err := yaml.Marshal(out)
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", "golden", name+".yaml")
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if string(got) != string(want) {
				t.Errorf("%s differs from the golden file (-update to refresh):\n%s", name, got)
			}
		})
	}
}

// checkOnlyAdded asserts what the golden files take for granted: the
// user's containers (but for probes rewritten to the proxy), init
// containers and volumes come through unchanged and in order, the added
// init containers run first, zmesh-init before zmesh-proxy, and
// zmesh-proxy is a native sidecar.
func checkOnlyAdded(t *testing.T, before, after *corev1.Pod) {
	t.Helper()
	if !reflect.DeepEqual(withoutRewrittenProbes(t, before.Spec.Containers, after.Spec.Containers), after.Spec.Containers) {
		t.Errorf("containers changed beyond their probes")
	}
	ic := after.Spec.InitContainers
	if len(ic) != len(before.Spec.InitContainers)+2 || ic[0].Name != InitContainer || ic[1].Name != ProxyContainer {
		t.Fatalf("init containers %v: want zmesh-init, zmesh-proxy, then the pod's", names(ic))
	}
	if len(before.Spec.InitContainers) > 0 && !reflect.DeepEqual(before.Spec.InitContainers, ic[2:]) {
		t.Errorf("the pod's own init containers changed")
	}
	if rp := ic[1].RestartPolicy; rp == nil || *rp != corev1.ContainerRestartPolicyAlways {
		t.Errorf("zmesh-proxy restartPolicy = %v, want Always", rp)
	}
	if ic[0].RestartPolicy != nil {
		t.Errorf("zmesh-init must be a plain init container (run to completion)")
	}
	vs := after.Spec.Volumes
	n := len(before.Spec.Volumes)
	if len(vs) != n+2 || (n > 0 && !reflect.DeepEqual(before.Spec.Volumes, vs[:n])) || vs[n].Name != TokenVolume || vs[n+1].Name != RootCertVolume {
		t.Errorf("volumes: want the pod's, then istio-token and istiod-ca-cert")
	}
	for k, v := range before.Labels {
		if after.Labels[k] != v && k != LabelTLSMode {
			t.Errorf("label %s changed from %q to %q", k, v, after.Labels[k])
		}
	}
	for k, v := range before.Annotations {
		if after.Annotations[k] != v {
			t.Errorf("annotation %s changed", k)
		}
	}
}

// withoutRewrittenProbes returns before with each probe that after has
// rewritten to the proxy's app-health port replaced by after's, checking
// that the rewrite keeps the probe's timing and asks for the right path.
func withoutRewrittenProbes(t *testing.T, before, after []corev1.Container) []corev1.Container {
	t.Helper()
	out := make([]corev1.Container, len(before))
	for i := range before {
		out[i] = *before[i].DeepCopy()
		if i >= len(after) {
			continue
		}
		for _, k := range probeKinds {
			was, now := k.get(&out[i]), k.get(&after[i])
			if was == nil || now == nil || reflect.DeepEqual(was, now) {
				continue
			}
			g := now.HTTPGet
			if g == nil || g.Path != AppHealthPath(before[i].Name, k.kind) || g.Port.IntValue() != AppHealthPort || g.Host != "" || len(g.HTTPHeaders) != 0 {
				t.Errorf("container %s %s rewritten to %+v", before[i].Name, k.field, now.ProbeHandler)
				continue
			}
			timing := now.DeepCopy()
			timing.ProbeHandler = was.ProbeHandler
			if !reflect.DeepEqual(timing, was) {
				t.Errorf("container %s %s: the rewrite changed its timing", before[i].Name, k.field)
			}
			*was = *now
		}
	}
	return out
}

func names(cs []corev1.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

func TestDecideReasons(t *testing.T) {
	s := testSettings(t)
	enabled := Namespace{Name: "shop", Labels: map[string]string{LabelInjection: "enabled"}}
	tests := []struct {
		name   string
		pod    corev1.Pod
		ns     Namespace
		inject bool
		err    string
	}{
		{name: "enabled namespace", ns: enabled, inject: true},
		{name: "opt-out label wins over enabled namespace", ns: enabled, pod: podWith(map[string]string{LabelInject: "false"}, nil)},
		{name: "opt-out accepts Istio's spellings", ns: enabled, pod: podWith(map[string]string{LabelInject: "Off"}, nil)},
		{name: "label wins over annotation", ns: enabled, pod: podWith(map[string]string{LabelInject: "true"}, map[string]string{LabelInject: "false"}), inject: true},
		{name: "empty label is unset", ns: enabled, pod: podWith(map[string]string{LabelInject: ""}, nil), inject: true},
		{name: "typo refused", ns: enabled, pod: podWith(map[string]string{LabelInject: "ture"}, nil), err: `label sidecar.istio.io/inject="ture" is neither true nor false`},
		{name: "annotation typo refused", ns: enabled, pod: podWith(nil, map[string]string{LabelInject: "nope"}), err: "neither true nor false"},
		{name: "istio-injection other than enabled", ns: Namespace{Name: "a", Labels: map[string]string{LabelInjection: "true"}}, pod: podWith(map[string]string{LabelInject: "true"}, nil)},
		{name: "excluded namespace", ns: Namespace{Name: "istio-system", Labels: map[string]string{LabelInjection: "enabled"}}},
		{name: "both namespace labels: istio-injection decides", ns: Namespace{Name: "a", Labels: map[string]string{LabelInjection: "enabled", LabelRevision: "canary"}}, inject: true},
		{name: "pod revision in enabled namespace", ns: enabled, pod: podWith(map[string]string{LabelRevision: "canary"}, nil), inject: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := s.Decide(&tt.pod, tt.ns)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d.Inject != tt.inject || d.Reason == "" {
				t.Errorf("Decide = %+v, want inject %v with a reason", d, tt.inject)
			}
		})
	}
}

func podWith(labels, annotations map[string]string) corev1.Pod {
	p := corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}}}
	p.Labels, p.Annotations = labels, annotations
	return p
}
