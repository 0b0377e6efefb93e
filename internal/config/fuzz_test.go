package config

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// FuzzParse checks that no input makes Parse, Validate or Version panic or
// hang, and that whatever Parse accepts is well formed.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(strictPA + "---\n" + allowAP))
	f.Add([]byte("apiVersion: v1\nkind: List\nitems: [{apiVersion: security.istio.io/v1, kind: PeerAuthentication, metadata: {name: a}}]\n"))
	f.Add([]byte("apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: a}\nspec: {selector: {matchLabels: {a: b}}, portLevelMtls: {80: {mode: DISABLE}}}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, _, err := Parse(data, "fuzz.yaml")
		if err != nil {
			return
		}
		for _, r := range rs {
			if r.Name == "" || r.Namespace == "" || r.Spec == nil || r.Kind == "" {
				t.Fatalf("Parse accepted a malformed resource: %+v", r)
			}
			_ = Validate(r)
		}
		// Version names the content, not the order it came in.
		reversed := slices.Clone(rs)
		slices.Reverse(reversed)
		if v1, v2 := Version(rs), Version(reversed); v1 != v2 {
			t.Fatalf("Version depends on the order of the resources: %s, %s", v1, v2)
		}
	})
}
