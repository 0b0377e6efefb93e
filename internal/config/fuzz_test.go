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

// FuzzReload checks Reload's promises on any pair of edits: no panic, a
// snapshot whatever the input, only valid resources in it, one version of
// each resource, and nothing in force that neither edit nor the previous
// snapshot defined.
func FuzzReload(f *testing.F) {
	f.Add([]byte(webAllow+"---\n"+apiAllow), []byte(webBad+"---\n"+apiDeny))
	f.Add([]byte(webAllow), []byte(brokenYAML+"---\n"+webAllowV2))
	f.Add([]byte(strictPA), []byte(strictPA+"---\n"+strictPA))
	f.Fuzz(func(t *testing.T, first, second []byte) {
		prev, _, _ := Reload(nil, map[string][]byte{"a.yaml": first}, nil)
		snap, _, _ := Reload(prev, map[string][]byte{"a.yaml": second, "b.yaml": first}, nil)
		if snap == nil || prev == nil {
			t.Fatal("Reload returned no snapshot")
		}
		seen := map[string]bool{}
		for _, r := range snap.All() {
			id := resourceID(r.Kind, r.Key())
			if seen[id] {
				t.Fatalf("%s in force twice", id)
			}
			seen[id] = true
			if err := Validate(r); err != nil {
				t.Fatalf("invalid resource in force: %v", err)
			}
			if f := sourceFile(r.Source); f != "a.yaml" && f != "b.yaml" {
				t.Fatalf("resource from nowhere: %s", r.Source)
			}
		}
	})
}
