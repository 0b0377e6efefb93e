package config

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// Documents that give warnings: an unknown kind (a parse warning) and a
// selector without labels (a validation warning).
const (
	unknownKind   = "apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata: {name: gw, namespace: web}\nspec: {}\n"
	emptySelector = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: empty, namespace: web}\nspec: {selector: {}, mtls: {mode: STRICT}}\n"
)

// TestLoaderMatchesReload follows a directory through a series of edits
// with one Loader and checks, at every step, that it gives exactly what
// Reload gives from scratch over the same previous snapshot (resources and
// where each came from, version, warnings, rejections and whether each
// keeps a last good version), and that it parsed only the inputs whose
// content it had not seen under that name.
func TestLoaderMatchesReload(t *testing.T) {
	type step struct {
		name       string
		files      map[string][]byte
		unreadable map[string]error
		parses     int // inputs the Loader must parse at this step
	}
	steps := []step{
		{
			name:   "first load parses every input",
			files:  map[string][]byte{"web.yaml": []byte(webAllow + "---\n" + unknownKind), "api.yaml": []byte(apiAllow), "pa.yaml": []byte(emptySelector), "root.yaml": []byte(strictPA)},
			parses: 4,
		},
		{
			name:   "one changed input is the only one parsed",
			files:  map[string][]byte{"web.yaml": []byte(webAllowV2 + "---\n" + unknownKind), "api.yaml": []byte(apiAllow), "pa.yaml": []byte(emptySelector), "root.yaml": []byte(strictPA)},
			parses: 1,
		},
		{
			name:   "the same content written again parses nothing",
			files:  map[string][]byte{"web.yaml": []byte(webAllowV2 + "---\n" + unknownKind), "api.yaml": []byte(apiAllow), "pa.yaml": []byte(emptySelector), "root.yaml": []byte(strictPA)},
			parses: 0,
		},
		{
			name:   "a bad edit is parsed once and keeps the last good version",
			files:  map[string][]byte{"web.yaml": []byte(webBad + "---\n" + unknownKind), "api.yaml": []byte(apiAllow), "pa.yaml": []byte(emptySelector), "root.yaml": []byte(strictPA)},
			parses: 1,
		},
		{
			name:   "the bad input unchanged is rejected again without a parse, still kept",
			files:  map[string][]byte{"web.yaml": []byte(webBad + "---\n" + unknownKind), "api.yaml": []byte(apiDeny), "pa.yaml": []byte(emptySelector), "root.yaml": []byte(strictPA)},
			parses: 1,
		},
		{
			name:   "the bad input unchanged, its resource now defined validly elsewhere: not kept",
			files:  map[string][]byte{"web.yaml": []byte(webBad + "---\n" + unknownKind), "web-new.yaml": []byte(webAllowV2), "api.yaml": []byte(apiDeny), "pa.yaml": []byte(emptySelector), "root.yaml": []byte(strictPA)},
			parses: 1,
		},
		{
			name:   "a broken input keeps what it held",
			files:  map[string][]byte{"web.yaml": []byte(webBad + "---\n" + unknownKind), "api.yaml": []byte(brokenYAML), "pa.yaml": []byte(emptySelector), "root.yaml": []byte(strictPA)},
			parses: 1,
		},
		{
			name:       "an unreadable input is not parsed and keeps what it held",
			files:      map[string][]byte{"web.yaml": []byte(webBad + "---\n" + unknownKind), "api.yaml": []byte(brokenYAML), "root.yaml": []byte(strictPA)},
			unreadable: map[string]error{"pa.yaml": errors.New("permission denied")},
			parses:     0,
		},
		{
			name:   "an input readable again is parsed again",
			files:  map[string][]byte{"web.yaml": []byte(webBad + "---\n" + unknownKind), "api.yaml": []byte(brokenYAML), "pa.yaml": []byte(emptySelector), "root.yaml": []byte(strictPA)},
			parses: 1,
		},
		{
			name:   "a duplicate in a new input: both rejected, the last good kept",
			files:  map[string][]byte{"web.yaml": []byte(webAllow), "api.yaml": []byte(apiAllow), "pa.yaml": []byte(emptySelector), "root.yaml": []byte(strictPA), "copy.yaml": []byte(strictPA)},
			parses: 3,
		},
		{
			name:   "same content under a new name is parsed: its sources differ",
			files:  map[string][]byte{"web2.yaml": []byte(webAllow), "api.yaml": []byte(apiAllow), "pa.yaml": []byte(emptySelector), "root.yaml": []byte(strictPA)},
			parses: 1,
		},
		{
			name:   "a removed input's resources go without a parse",
			files:  map[string][]byte{"web2.yaml": []byte(webAllow), "api.yaml": []byte(apiAllow)},
			parses: 0,
		},
		{
			name:   "an input over the size limit is rejected whole, its resources kept",
			files:  map[string][]byte{"web2.yaml": []byte(webAllow + "#" + strings.Repeat("x", MaxInputSize)), "api.yaml": []byte(apiAllow)},
			parses: 1,
		},
		{
			name:   "and parsed again only once it changes",
			files:  map[string][]byte{"web2.yaml": []byte(webAllow + "#" + strings.Repeat("x", MaxInputSize)), "api.yaml": []byte(apiAllow)},
			parses: 0,
		},
	}
	var (
		l    Loader
		prev *Snapshot
	)
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			before := l.Parsed()
			snap, warnings, rejected := l.Reload(prev, s.files, s.unreadable)
			wantSnap, wantWarnings, wantRejected := Reload(prev, s.files, s.unreadable)
			if got := l.Parsed() - before; got != s.parses {
				t.Errorf("parsed %d inputs, want %d", got, s.parses)
			}
			if snap.Version != wantSnap.Version || !reflect.DeepEqual(inForce(snap), inForce(wantSnap)) {
				t.Errorf("snapshot %s %v, Reload's %s %v", snap.Version, inForce(snap), wantSnap.Version, inForce(wantSnap))
			}
			if !reflect.DeepEqual(warnings, wantWarnings) {
				t.Errorf("warnings %v, Reload's %v", warnings, wantWarnings)
			}
			if got, want := rejections(rejected), rejections(wantRejected); got != want {
				t.Errorf("rejected\n%s\nReload's\n%s", got, want)
			}
			prev = snap
		})
	}
}

// rejections lists rejections one a line: the error and whether a last
// good version stays.
func rejections(rejected []*SourceError) string {
	var b strings.Builder
	for _, r := range rejected {
		fmt.Fprintf(&b, "%s kept=%t\n", r, r.Kept)
	}
	return b.String()
}

// BenchmarkReloadOneFileChanged is the edit of one policy file in a
// directory of 1,000 namespaces (a PeerAuthentication and five
// AuthorizationPolicies each, as bench/scale writes them): with a Loader,
// and with Reload parsing everything, for comparison.
func BenchmarkReloadOneFileChanged(b *testing.B) {
	files := map[string][]byte{}
	for i := range 1000 {
		files[fmt.Sprintf("ns-%04d.yaml", i)] = []byte(namespacePolicies(i, "GET"))
	}
	edited := []byte(namespacePolicies(0, "POST"))
	original := files["ns-0000.yaml"]
	b.Run("loader", func(b *testing.B) {
		var l Loader
		prev, _, rejected := l.Reload(nil, files, nil)
		if len(rejected) > 0 {
			b.Fatal(rejected)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			files["ns-0000.yaml"] = edited
			if i%2 == 1 {
				files["ns-0000.yaml"] = original
			}
			prev, _, _ = l.Reload(prev, files, nil)
		}
	})
	b.Run("full", func(b *testing.B) {
		prev, _, _ := Reload(nil, files, nil)
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			files["ns-0000.yaml"] = edited
			if i%2 == 1 {
				files["ns-0000.yaml"] = original
			}
			prev, _, _ = Reload(prev, files, nil)
		}
	})
}

// namespacePolicies is one namespace's file: a PeerAuthentication, a
// namespace-wide AuthorizationPolicy and four selector policies, the
// first of which allows method.
func namespacePolicies(i int, method string) string {
	ns := fmt.Sprintf("ns-%04d", i)
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: %s}\nspec: {mtls: {mode: STRICT}}\n", ns)
	fmt.Fprintf(&b, "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: ns-wide, namespace: %s}\nspec:\n  rules:\n  - from:\n    - source: {namespaces: [%s, istio-system]}\n", ns, ns)
	for app := range 4 {
		m := "GET"
		if app == 0 {
			m = method
		}
		fmt.Fprintf(&b, "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: app-%d, namespace: %s}\nspec:\n  selector: {matchLabels: {app: app-%d}}\n  rules:\n  - from:\n    - source: {principals: [cluster.local/ns/%s/sa/client]}\n    to:\n    - operation: {methods: [%s], paths: [/api/*]}\n", app, ns, app, ns, m)
	}
	return b.String()
}
