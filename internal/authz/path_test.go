package authz

import (
	"errors"
	"testing"
)

// Istio "Authorization Policy Normalization", path section, and the
// MeshConfig pathNormalization options.
func TestNormalizePath(t *testing.T) {
	const (
		base   = NormalizeBase
		merge  = NormalizeMergeSlashes
		decode = NormalizeDecodeAndMergeSlashes
		none   = NormalizeNone
	)
	cases := []struct {
		name string
		in   string
		n    PathNormalization
		want string
		err  error
	}{
		{"an already normal path is unchanged", "/a/b/c", base, "/a/b/c", nil},
		{"the query is dropped", "/a?x=/../b", base, "/a", nil},
		{"a fragment is dropped", "/a#/../b", base, "/a", nil},
		{"the root stays the root", "/", base, "/", nil},
		{"%2d %2e %5f %7e and digits decode under BASE", "/%2d%2E%5f%7E%30%39", base, "/-._~09", nil},
		{"%41-%5A and %61-%7A decode under BASE: /%61dmin is /admin", "/%61dmin/%41", base, "/admin/A", nil},
		{"decoding happens once: %2561 stays %2561", "/%2561", base, "/%2561", nil},
		{"other escapes stay, in upper case", "/a%3fb%2f", base, "/a%3Fb%2F", nil},
		{"%2F stays encoded under BASE: /admin%2F is not /admin/", "/admin%2F", base, "/admin%2F", nil},
		{"%2F stays encoded under MERGE_SLASHES", "/a%2fb", merge, "/a%2Fb", nil},
		{"%2F decodes under DECODE_AND_MERGE_SLASHES", "/some%2fdata/%61%62%63", decode, "/some/data/abc", nil},
		{"%5C decodes to a slash under DECODE_AND_MERGE_SLASHES", "/a%5Cb", decode, "/a/b", nil},
		{"a backslash is a slash under BASE", "/some\\data", base, "/some/data", nil},
		{"/./ resolves", "/./admin", base, "/admin", nil},
		{"/../ resolves", "/a/../admin", base, "/admin", nil},
		{"the RFC 3986 example", "/public/./data/abc/../xyz", base, "/public/data/xyz", nil},
		{".. never climbs above the root", "/../../admin", base, "/admin", nil},
		{"a trailing .. keeps a trailing slash", "/a/b/..", base, "/a/", nil},
		{"a trailing . keeps a trailing slash", "/a/.", base, "/a/", nil},
		{"encoded dots are dot segments: /%2e%2e/admin", "/x/%2e%2e/admin", base, "/admin", nil},
		{"mixed dot: /.%2e/", "/x/.%2E/admin", base, "/admin", nil},
		{"... is not a dot segment", "/a/.../b", base, "/a/.../b", nil},
		{"//admin keeps its slashes under BASE", "//admin", base, "//admin", nil},
		{"//admin merges under MERGE_SLASHES", "//admin", merge, "/admin", nil},
		{"multiple slashes merge", "/some//data///abc", merge, "/some/data/abc", nil},
		{"dot segments resolve before slashes merge (Istio's order)", "/a//../b", merge, "/a/b", nil},
		{"encoded backslash-dot-dot under DECODE", "/a%5C..%5Cadmin", decode, "/admin", nil},
		{"%2F..%2F does not climb under BASE", "/a%2F..%2Fadmin", base, "/a%2F..%2Fadmin", nil},
		{"%2F..%2F climbs under DECODE_AND_MERGE_SLASHES", "/a/b%2F..%2Fadmin", decode, "/a/admin", nil},
		{"non-ASCII bytes are percent-encoded", "/caf\xc3\xa9", base, "/caf%C3%A9", nil},
		{"case is preserved: /Admin stays /Admin", "/Admin", base, "/Admin", nil},
		{"NONE leaves dot segments", "/a/../b", none, "/a/../b", nil},
		{"NONE still drops the query", "/a?b", none, "/a", nil},
		{"%00 is rejected (Istio: 400)", "/a%00", base, "", ErrPathNUL},
		{"a malformed escape is rejected", "/a%zz", base, "", ErrPathBadEscape},
		{"a truncated escape is rejected", "/a%4", base, "", ErrPathBadEscape},
		{"a lone % that could form an escape after decoding is rejected", "/%%34%31", base, "", ErrPathBadEscape},
		{"a relative target is rejected", "admin", base, "", ErrPathNotAbsolute},
		{"an empty target is rejected", "", base, "", ErrPathNotAbsolute},
		{"a space is rejected", "/a b", base, "", ErrPathBadChar},
		{"a control character is rejected under NONE too", "/a\x01", none, "", ErrPathBadChar},
		{"%00 is rejected under NONE too", "/a%00", none, "", ErrPathNUL},
		{"%00 is rejected under MERGE_SLASHES", "//a%00", merge, "", ErrPathNUL},
		{"%00 is rejected under DECODE_AND_MERGE_SLASHES", "/a%00", decode, "", ErrPathNUL},
		{"%00 in an already clean-looking path is rejected", "/a/%00/b", base, "", ErrPathNUL},
		{"a truncated escape is rejected under NONE too", "/a%2", none, "", ErrPathBadEscape},
		{"a lone % is rejected under NONE too", "/a%", none, "", ErrPathBadEscape},
		{"a malformed escape is rejected under NONE too", "/a%zz/b", none, "", ErrPathBadEscape},
		{"an escape cut by the query is rejected", "/a%4?1", none, "", ErrPathBadEscape},
		{"escapes in the query are not the path's business", "/a?x=%zz%00", none, "/a", nil},
		{"NONE keeps valid escapes as sent", "/a%2fb%41", none, "/a%2fb%41", nil},
		{"NONE keeps a backslash", "/a\\b", none, "/a\\b", nil},
		{"%5C stays encoded under MERGE_SLASHES", "/a%5cb", merge, "/a%5Cb", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := NormalizePath(tc.in, tc.n)
			if !errors.Is(err, tc.err) {
				t.Fatalf("NormalizePath(%q, %v) error = %v, want %v", tc.in, tc.n, err, tc.err)
			}
			if got != tc.want {
				t.Errorf("NormalizePath(%q, %v) = %q, want %q", tc.in, tc.n, got, tc.want)
			}
			if err == nil {
				again, err := NormalizePath(got, tc.n)
				if err != nil || again != got {
					t.Errorf("not idempotent: %q -> %q, %v", got, again, err)
				}
			}
		})
	}
}

// Attack paths against `DENY paths: ["/admin", "/admin/*"]`: with the
// normalization Istio recommends for each, none slips past.
func TestDenyAdminSurvivesPathTricks(t *testing.T) {
	deny := `{"action":"DENY","rules":[{"to":[{"operation":{"paths":["/admin","/admin/*"]}}]}]}`
	cases := []struct {
		path string
		n    PathNormalization
		deny bool
	}{
		{"/admin", NormalizeBase, true},
		{"/./admin", NormalizeBase, true},
		{"/a/../admin", NormalizeBase, true},
		{"/%61dmin", NormalizeBase, true},
		{"/%2e/admin", NormalizeBase, true},
		{"/\\admin", NormalizeBase, false},
		{"//admin", NormalizeBase, false}, // BASE keeps "//": Istio recommends MERGE_SLASHES
		{"//admin", NormalizeMergeSlashes, true},
		{"/\\admin", NormalizeMergeSlashes, true},
		{"/admin?x=1", NormalizeBase, true},
		{"/admin/x/../y", NormalizeBase, true},
		{"/x/..%2Fadmin", NormalizeBase, false}, // %2F is data under BASE
		{"/x/..%2Fadmin", NormalizeDecodeAndMergeSlashes, true},
		{"/%2Fadmin", NormalizeDecodeAndMergeSlashes, true},
		{"/Admin", NormalizeDecodeAndMergeSlashes, false}, // paths are case-sensitive, as in Istio
	}
	for _, tc := range cases {
		t.Run(tc.n.String()+" "+tc.path, func(t *testing.T) {
			e := mustCompile(t, Options{PathNormalization: tc.n}, ap(t, "foo/deny-admin", deny))
			d := e.Decide(httpReq(path(tc.path)))
			if denied := !d.Allow; denied != tc.deny {
				t.Errorf("path %q under %v: denied=%v, want %v (%s)", tc.path, tc.n, denied, tc.deny, d.Reason)
			}
		})
	}
}

func TestParsePathNormalization(t *testing.T) {
	for _, n := range []PathNormalization{NormalizeBase, NormalizeMergeSlashes, NormalizeDecodeAndMergeSlashes, NormalizeNone} {
		got, err := ParsePathNormalization(n.String())
		if err != nil || got != n {
			t.Errorf("ParsePathNormalization(%q) = %v, %v", n.String(), got, err)
		}
	}
	if n, err := ParsePathNormalization(""); err != nil || n != NormalizeBase {
		t.Errorf(`ParsePathNormalization("") = %v, %v; want BASE`, n, err)
	}
	if _, err := ParsePathNormalization("bogus"); err == nil {
		t.Error("ParsePathNormalization(bogus) succeeded")
	}
}
