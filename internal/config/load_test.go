package config

import (
	"errors"
	"strings"
	"testing"
)

const (
	strictPA = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: istio-system}\nspec: {mtls: {mode: STRICT}}\n"
	allowAP  = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: allow, namespace: foo}\nspec: {rules: [{}]}\n"
)

func TestLoadBuildsSnapshot(t *testing.T) {
	snap, ws, err := Load(map[string][]byte{"a.yaml": []byte(strictPA), "b.yaml": []byte(allowAP)})
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != 0 {
		t.Errorf("warnings: %v", ws)
	}
	if len(snap.List(KindPeerAuthentication)) != 1 || len(snap.List(KindAuthorizationPolicy)) != 1 {
		t.Errorf("snapshot = %v", snap.All())
	}
	if len(snap.Version) != 16 {
		t.Errorf("Version = %q, want 16 hex digits", snap.Version)
	}
}

func TestLoadIsAllOrNothing(t *testing.T) {
	bad := "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: bad, namespace: foo}\nspec: {action: DENY}\n"
	snap, _, err := Load(map[string][]byte{"a.yaml": []byte(strictPA), "z.yaml": []byte(bad)})
	if err == nil || snap != nil {
		t.Fatalf("Load = %v, %v; want an error and no snapshot", snap, err)
	}
	var se *SourceError
	if !errors.As(err, &se) || se.Source != "z.yaml#1" || se.Key != "foo/bad" {
		t.Errorf("error %v should locate z.yaml#1 foo/bad", err)
	}
}

func TestLoadReportsEveryBadFile(t *testing.T) {
	_, _, err := Load(map[string][]byte{
		"a.yaml": []byte("a: ["),
		"b.yaml": []byte(strictPA),
		"c.yaml": []byte("apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: x}\nspec: {bogus: 1}\n"),
	})
	if err == nil || !strings.Contains(err.Error(), "a.yaml#1") || !strings.Contains(err.Error(), "c.yaml#1") {
		t.Errorf("Load error %v should name a.yaml and c.yaml", err)
	}
}

func TestLoadRejectsDuplicates(t *testing.T) {
	v1beta1 := strings.Replace(strictPA, "/v1\n", "/v1beta1\n", 1)
	_, _, err := Load(map[string][]byte{"a.yaml": []byte(strictPA), "b.yaml": []byte(v1beta1)})
	if err == nil || !strings.Contains(err.Error(), "defined twice (first at a.yaml#1)") || !strings.Contains(err.Error(), "b.yaml#1") {
		t.Errorf("Load error = %v, want a duplicate error naming both files", err)
	}
	// Same name, different kind or namespace: not duplicates.
	other := strings.Replace(strictPA, "istio-system", "foo", 1)
	if _, _, err := Load(map[string][]byte{"a.yaml": []byte(strictPA), "b.yaml": []byte(other)}); err != nil {
		t.Errorf("same name in another namespace: %v", err)
	}
}

func TestLoadPassesOnWarnings(t *testing.T) {
	deny := "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: d, namespace: foo}\nspec: {action: DENY, rules: [{to: [{operation: {methods: [POST]}}]}]}\n"
	unknown := "apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata: {name: g}\n"
	_, ws, err := Load(map[string][]byte{"d.yaml": []byte(deny), "g.yaml": []byte(unknown)})
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != 2 || !strings.Contains(ws[0].String(), "d.yaml#1: AuthorizationPolicy foo/d:") || ws[1].Source != "g.yaml#1" {
		t.Errorf("warnings = %v", ws)
	}
}

func TestVersionDependsOnContentOnly(t *testing.T) {
	version := func(files map[string][]byte) string {
		t.Helper()
		snap, _, err := Load(files)
		if err != nil {
			t.Fatal(err)
		}
		return snap.Version
	}
	base := version(map[string][]byte{"a.yaml": []byte(strictPA + "---\n" + allowAP)})
	cases := []struct {
		name  string
		files map[string][]byte
		same  bool
	}{
		{"split across files", map[string][]byte{"x.yaml": []byte(allowAP), "y.yaml": []byte(strictPA)}, true},
		{"reformatted and commented", map[string][]byte{"a.yaml": []byte("# c\n" + allowAP + "---\n---\n" + strings.ReplaceAll(strictPA, ": ", ":   "))}, true},
		{"mode changed", map[string][]byte{"a.yaml": []byte(strings.Replace(strictPA, "STRICT", "PERMISSIVE", 1) + "---\n" + allowAP)}, false},
		{"label added", map[string][]byte{"a.yaml": []byte(strings.Replace(strictPA, "namespace: istio-system", "namespace: istio-system, labels: {a: b}", 1) + "---\n" + allowAP)}, false},
		{"resource removed", map[string][]byte{"a.yaml": []byte(strictPA)}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := version(tc.files); (got == base) != tc.same {
				t.Errorf("version %s vs base %s, want same=%v", got, base, tc.same)
			}
		})
	}
	if Version(nil) != version(map[string][]byte{}) {
		t.Error("empty Load and Version(nil) differ")
	}
}
