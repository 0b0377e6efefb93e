package analyze

import (
	"encoding/json"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// TestGolden runs Analyze over each testdata/NAME.yaml (with the mesh
// config in NAME.mesh.yaml when present; "cluster-" cases as a cluster's
// state) and compares the text output with NAME.golden. The cases follow
// the examples of Istio's documentation page of each message, and the
// traps zmesh's own messages are about, each next to its fixed form that
// must stay silent.
func TestGolden(t *testing.T) {
	cases, err := filepath.Glob("testdata/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, path := range cases {
		if strings.HasSuffix(path, ".mesh.yaml") {
			continue
		}
		n++
		name := strings.TrimSuffix(filepath.Base(path), ".yaml")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			in := FromFiles(map[string][]byte{filepath.Base(path): data})
			in.Cluster = strings.HasPrefix(name, "cluster-")
			if mc, err := os.ReadFile(strings.TrimSuffix(path, ".yaml") + ".mesh.yaml"); err == nil {
				in.Mesh = parseMesh(t, mc)
			}
			var b strings.Builder
			for _, m := range Analyze(in) {
				b.WriteString(m.String())
				b.WriteByte('\n')
			}
			golden := strings.TrimSuffix(path, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got := b.String(); got != string(want) {
				t.Errorf("output differs from %s:\n--- got\n%s--- want\n%s", golden, got, want)
			}
		})
	}
	if n < 10 {
		t.Fatalf("only %d cases found", n)
	}
}

func parseMesh(t *testing.T, data []byte) *meshv1alpha1.MeshConfig {
	t.Helper()
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		t.Fatal(err)
	}
	mc := &meshv1alpha1.MeshConfig{}
	if err := protojson.Unmarshal(js, mc); err != nil {
		t.Fatal(err)
	}
	return mc
}

// TestQuickstartIsClean: the bundled quickstart, what a newcomer runs
// first, must analyze without a message.
func TestQuickstartIsClean(t *testing.T) {
	dir := "../../examples/quickstart"
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = data
	}
	in := FromFiles(files)
	if len(in.Workloads) != 3 {
		t.Fatalf("workloads = %d, want the quickstart's 3", len(in.Workloads))
	}
	if ms := Analyze(in); len(ms) != 0 {
		t.Errorf("quickstart has messages: %v", ms)
	}
}

// TestContractFormat pins DESIGN §5's text and JSON forms.
func TestContractFormat(t *testing.T) {
	m := Message{Type: ReferencedResourceNotFound, Resource: "AuthorizationPolicy foo/deny-all", Args: []any{"namespace", "bar"}}
	if got, want := m.String(), `Error [IST0101] (AuthorizationPolicy foo/deny-all) Referenced namespace not found: "bar"`; got != want {
		t.Errorf("text = %s\nwant   %s", got, want)
	}
	js, err := json.Marshal([]Message{m})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(js), `[{"code":"IST0101","level":"Error","resource":"AuthorizationPolicy foo/deny-all","message":"Referenced namespace not found: \"bar\""}]`; got != want {
		t.Errorf("json = %s\nwant   %s", got, want)
	}
}

// TestTypesUnique: one code per type, Istio's in the IST range and
// zmesh's outside it.
func TestTypesUnique(t *testing.T) {
	seen := map[string]bool{}
	for _, ty := range Types() {
		if seen[ty.Code] {
			t.Errorf("code %s listed twice", ty.Code)
		}
		seen[ty.Code] = true
		if !strings.HasPrefix(ty.Code, "IST") && !strings.HasPrefix(ty.Code, "ZM") {
			t.Errorf("code %s is neither Istio's nor zmesh's", ty.Code)
		}
		if strings.HasPrefix(ty.Code, "ZM") && ty.Why == "" {
			t.Errorf("%s has no documented reason", ty.Code)
		}
	}
}

// TestLayering keeps analyze pure (STYLE.md habit 16).
func TestLayering(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list unavailable: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep == "net/http" || dep == "os/exec" || strings.HasPrefix(dep, "google.golang.org/grpc") || strings.HasPrefix(dep, "k8s.io/") {
			t.Errorf("analyze depends on %s", dep)
		}
	}
}

// TestTypesInCodeOrder: Istio's types come first, in code order, as the
// README's table lists them.
func TestTypesInCodeOrder(t *testing.T) {
	ts := Types()
	for i := 1; i < len(ts); i++ {
		a, b := ts[i-1].Code, ts[i].Code
		if strings.HasPrefix(a, "IST") && strings.HasPrefix(b, "IST") && a >= b {
			t.Errorf("%s listed before %s", a, b)
		}
		if strings.HasPrefix(a, "ZM") && strings.HasPrefix(b, "IST") {
			t.Errorf("Istio's %s listed after zmesh's %s", b, a)
		}
	}
}
