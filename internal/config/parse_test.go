package config

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"
)

func TestParseMixedFile(t *testing.T) {
	data, err := os.ReadFile("testdata/mixed.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rs, ws, err := Parse(data, "mixed.yaml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := []struct {
		kind   Kind
		key    string
		source string
	}{
		{KindPeerAuthentication, "istio-system/default", "mixed.yaml#1"},
		{KindAuthorizationPolicy, "foo/httpbin-viewer", "mixed.yaml#2"},
		{KindRequestAuthentication, "foo/jwt", "mixed.yaml#3"},
		{KindServiceEntry, "default/external", "mixed.yaml#4"},
		{KindWorkloadEntry, "foo/vm1", "mixed.yaml#5"},
	}
	if len(rs) != len(want) {
		t.Fatalf("got %d resources, want %d: %v", len(rs), len(want), rs)
	}
	for i, w := range want {
		if rs[i].Kind != w.kind || rs[i].Key() != w.key || rs[i].Source != w.source {
			t.Errorf("resource %d = %s %s (%s), want %s %s (%s)", i, rs[i].Kind, rs[i].Key(), rs[i].Source, w.kind, w.key, w.source)
		}
		if err := Validate(rs[i]); err != nil {
			t.Errorf("Validate(%s): %v", rs[i].Key(), err)
		}
	}
	ap := rs[1].Spec.(*security.AuthorizationPolicy)
	if got := ap.Rules[0].From[0].Source.Principals[0]; got != "cluster.local/ns/bar/sa/sleep" {
		t.Errorf("principal = %q", got)
	}
	if rs[1].Labels["team"] != "a" {
		t.Errorf("labels = %v", rs[1].Labels)
	}
	// The zmesh.dev Workload is skipped silently; the EnvoyFilter with a warning.
	if len(ws) != 1 || ws[0].Source != "mixed.yaml#7" || !strings.Contains(ws[0].Message, "EnvoyFilter") {
		t.Errorf("warnings = %v, want one about the EnvoyFilter in document 7", ws)
	}
}

func TestParseEveryVersionDecodesIntoOneType(t *testing.T) {
	cases := []struct {
		apiVersion string
		kind       Kind
		want       proto.Message
	}{
		{"security.istio.io/v1", KindPeerAuthentication, &security.PeerAuthentication{}},
		{"security.istio.io/v1beta1", KindPeerAuthentication, &security.PeerAuthentication{}},
		{"security.istio.io/v1", KindAuthorizationPolicy, &security.AuthorizationPolicy{}},
		{"security.istio.io/v1beta1", KindAuthorizationPolicy, &security.AuthorizationPolicy{}},
		{"security.istio.io/v1", KindRequestAuthentication, &security.RequestAuthentication{}},
		{"security.istio.io/v1beta1", KindRequestAuthentication, &security.RequestAuthentication{}},
		{"networking.istio.io/v1", KindServiceEntry, &networking.ServiceEntry{}},
		{"networking.istio.io/v1beta1", KindServiceEntry, &networking.ServiceEntry{}},
		{"networking.istio.io/v1alpha3", KindServiceEntry, &networking.ServiceEntry{}},
		{"networking.istio.io/v1", KindWorkloadEntry, &networking.WorkloadEntry{}},
		{"networking.istio.io/v1beta1", KindWorkloadEntry, &networking.WorkloadEntry{}},
		{"networking.istio.io/v1alpha3", KindWorkloadEntry, &networking.WorkloadEntry{}},
	}
	for _, tc := range cases {
		t.Run(tc.apiVersion+"/"+string(tc.kind), func(t *testing.T) {
			doc := "apiVersion: " + tc.apiVersion + "\nkind: " + string(tc.kind) + "\nmetadata: {name: x}\n"
			rs, ws, err := Parse([]byte(doc), "t.yaml")
			if err != nil || len(ws) != 0 || len(rs) != 1 {
				t.Fatalf("Parse = %v, %v, %v", rs, ws, err)
			}
			if rs[0].Spec.ProtoReflect().Descriptor() != tc.want.ProtoReflect().Descriptor() {
				t.Errorf("spec type %T, want %T", rs[0].Spec, tc.want)
			}
			if rs[0].APIVersion != tc.apiVersion {
				t.Errorf("APIVersion = %q", rs[0].APIVersion)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	const pa = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
	const ap = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
	cases := []struct {
		name string
		doc  string
		want []string // substrings of the error
	}{
		{"missing name is an error", pa + "metadata: {namespace: foo}\n", []string{"t.yaml#1", "PeerAuthentication", "metadata.name must be set"}},
		{"unknown spec field names source, kind, name and field path",
			ap + "metadata: {name: deny, namespace: foo}\nspec:\n  rules:\n  - from:\n    - source:\n        principal: [x]\n",
			[]string{"t.yaml#1", "AuthorizationPolicy foo/deny", `spec.rules[0].from[0].source: unknown field "principal"`, `did you mean "principals"`}},
		{"unknown top-level spec field", pa + "metadata: {name: x}\nspec: {mTLS: {mode: STRICT}}\n", []string{`spec: unknown field "mTLS"`, `did you mean "mtls"`}},
		{"invalid enum value lists the valid ones", pa + "metadata: {name: x}\nspec: {mtls: {mode: STRICTER}}\n", []string{`spec.mtls.mode: invalid value "STRICTER"`, "STRICT"}},
		{"wrong type", ap + "metadata: {name: x}\nspec: {rules: {from: []}}\n", []string{"spec.rules: must be a list"}},
		{"invalid YAML", "a: [\n", []string{"t.yaml#1", "invalid YAML"}},
		{"duplicate YAML keys are rejected, not last-wins", pa + "metadata: {name: x}\nspec:\n  mtls: {mode: STRICT}\n  mtls: {mode: DISABLE}\n", []string{"invalid YAML", "mtls"}},
		{"missing kind", "apiVersion: v1\nmetadata: {name: x}\n", []string{"apiVersion and kind must be set"}},
		{"scalar document", "just a string\n", []string{"not an object"}},
		{"label values must be strings", pa + "metadata: {name: x, labels: {version: 1}}\n", []string{"metadata.labels", "string"}},
		{"invalid name", pa + "metadata: {name: Foo_Bar}\n", []string{"metadata.name", "not a valid name"}},
		{"invalid namespace", pa + "metadata: {name: x, namespace: a/b}\n", []string{"metadata.namespace"}},
		{"error in second document names it", pa + "metadata: {name: x}\n---\n" + pa + "metadata: {}\n", []string{"t.yaml#2"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Parse([]byte(tc.doc), "t.yaml")
			if err == nil {
				t.Fatal("Parse succeeded, want error")
			}
			var se *SourceError
			if !errors.As(err, &se) {
				t.Errorf("error %T is not a *SourceError", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestParseDefaults(t *testing.T) {
	rs, _, err := Parse([]byte("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: allow-nothing}\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if rs[0].Namespace != "default" {
		t.Errorf("namespace = %q, want default", rs[0].Namespace)
	}
	if rs[0].Spec == nil || !proto.Equal(rs[0].Spec, &security.AuthorizationPolicy{}) {
		t.Errorf("missing spec should decode as an empty spec, got %v", rs[0].Spec)
	}
}

func TestParseSkipsEmptyAndOwnDocuments(t *testing.T) {
	in := "---\n# only a comment\n---\n\n---\napiVersion: zmesh.dev/v1\nkind: Workload\nmetadata: {name: a}\n---\napiVersion: local.zmesh.dev/v1\nkind: Mesh\n"
	rs, ws, err := Parse([]byte(in), "t.yaml")
	if err != nil || len(rs) != 0 || len(ws) != 0 {
		t.Errorf("Parse = %v, %v, %v; want nothing", rs, ws, err)
	}
}

func TestParseExpandsKubernetesList(t *testing.T) {
	in := `apiVersion: v1
kind: List
items:
- apiVersion: security.istio.io/v1
  kind: PeerAuthentication
  metadata: {name: a, namespace: foo, uid: abc, resourceVersion: "1"}
  spec: {mtls: {mode: STRICT}}
  status: {}
- apiVersion: v1
  kind: List
  items: []
`
	rs, ws, err := Parse([]byte(in), "t.yaml")
	if err != nil || len(rs) != 1 {
		t.Fatalf("Parse = %v, %v, %v", rs, ws, err)
	}
	if len(ws) != 1 || ws[0].Source != "t.yaml#1.items[1]" {
		t.Errorf("a List nested in a List should be skipped with a warning, got %v", ws)
	}
	if rs[0].Source != "t.yaml#1.items[0]" || rs[0].Key() != "foo/a" {
		t.Errorf("got %s from %s", rs[0].Key(), rs[0].Source)
	}
}

func TestParseRejectsOversizedInput(t *testing.T) {
	big := make([]byte, MaxInputSize+1)
	if _, _, err := Parse(big, "big.yaml"); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Errorf("Parse(4 MiB + 1) = %v, want a size error", err)
	}
}

// A YAML alias bomb must fail (or stay small) quickly, not exhaust memory.
func TestParseBoundsAliasExpansion(t *testing.T) {
	bomb := `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: x}
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
spec: {rules: *i}
`
	start := time.Now()
	_, _, err := Parse([]byte(bomb), "bomb.yaml")
	if err == nil {
		t.Fatal("alias bomb parsed without error")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("alias bomb took %v", d)
	}
	t.Logf("alias bomb: %v (%v)", err, time.Since(start))
}

func TestParseBoundsNesting(t *testing.T) {
	deep := "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: x}\nspec: " +
		strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + "\n"
	start := time.Now()
	if _, _, err := Parse([]byte(deep), "deep.yaml"); err == nil {
		t.Fatal("deeply nested document parsed without error")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("deep nesting took %v", d)
	}
}

func TestSplitDocuments(t *testing.T) {
	cases := []struct {
		in   string
		want int
	}{
		{"", 1},
		{"a: 1", 1},
		{"a: 1\n---\nb: 2\n", 2},
		{"---\na: 1\n", 2},
		{"a: 1\n--- # c\nb: 2", 2},
		{"a: 1\n---\r\nb: 2", 2},
		{"a: |\n  ---x\n", 1},
		{"a: 1\n----\n", 1},
		{"a: 1\n  ---\n", 1},
	}
	for _, tc := range cases {
		if got := len(SplitDocuments([]byte(tc.in))); got != tc.want {
			t.Errorf("SplitDocuments(%q) = %d documents, want %d", tc.in, got, tc.want)
		}
	}
}

func TestParseExplainsTypeMistakes(t *testing.T) {
	cases := []struct{ name, spec, want string }{
		{"unquoted port in a string list", "rules: [{to: [{operation: {ports: [80]}}]}]", `spec.rules[0].to[0].operation.ports[0]: must be a string, not 80 (quote it: "80")`},
		{"non-numeric map key", "portLevelMtls: {abc: {mode: STRICT}}", `spec.portLevelMtls[abc]: key "abc" must be a number`},
		{"object where a list is expected", "rules: {}", "spec.rules: must be a list, not an object"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			kind := "AuthorizationPolicy"
			if strings.HasPrefix(tc.spec, "portLevel") {
				kind = "PeerAuthentication"
			}
			doc := "apiVersion: security.istio.io/v1\nkind: " + kind + "\nmetadata: {name: p}\nspec: {" + tc.spec + "}\n"
			_, _, err := Parse([]byte(doc), "t.yaml")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}
