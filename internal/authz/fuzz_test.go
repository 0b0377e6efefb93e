package authz

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	securityv1beta1 "istio.io/api/security/v1beta1"

	"github.com/zmesh/zmesh/internal/config"
)

// FuzzNormalizePath checks that normalization never panics, is idempotent,
// and leaves no dot segment, no decodable unreserved escape and (when
// merging) no "//" behind.
func FuzzNormalizePath(f *testing.F) {
	for _, s := range []string{"/", "/a/../b", "//admin", "/%61dmin", "/admin%2F", "/a%5C..%5Cb", "/%%34%31", "/x/.%2e/y?q", "/caf\xc3\xa9", "/a%00"} {
		f.Add(s, uint8(0))
		f.Add(s, uint8(2))
	}
	f.Fuzz(func(t *testing.T, p string, mode uint8) {
		n := PathNormalization(mode % 4)
		got, err := NormalizePath(p, n)
		if err != nil {
			return
		}
		again, err := NormalizePath(got, n)
		if err != nil || again != got {
			t.Fatalf("not idempotent under %v: %q -> %q -> %q (%v)", n, p, got, again, err)
		}
		// Every mode, NONE included: what is forwarded unescapes cleanly
		// and holds no NUL.
		if dec, ok := unescapeAll(got); !ok || strings.IndexByte(dec, 0) >= 0 {
			t.Fatalf("%q -> %q under %v: malformed escape or NUL accepted", p, got, n)
		}
		if n == NormalizeNone {
			return
		}
		if !strings.HasPrefix(got, "/") {
			t.Fatalf("%q -> %q: not absolute", p, got)
		}
		for _, seg := range strings.Split(got, "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("%q -> %q: dot segment left", p, got)
			}
		}
		if n != NormalizeBase && strings.Contains(got, "//") {
			t.Fatalf("%q -> %q: slashes not merged", p, got)
		}
		if strings.ContainsRune(got, '\\') {
			t.Fatalf("%q -> %q: backslash left", p, got)
		}
	})
}

// unescapeAll decodes every %XX of p; ok is false for a "%" without two
// hex digits after it.
func unescapeAll(p string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] != '%' {
			b.WriteByte(p[i])
			continue
		}
		if i+2 >= len(p) {
			return "", false
		}
		hi, ok1 := unhex(p[i+1])
		lo, ok2 := unhex(p[i+2])
		if !ok1 || !ok2 {
			return "", false
		}
		b.WriteByte(hi<<4 | lo)
		i += 2
	}
	return b.String(), true
}

// FuzzCompile feeds arbitrary policy JSON to Compile: it must never panic,
// and a compiled engine must decide without panicking.
func FuzzCompile(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"rules":[{}]}`, refExample,
		`{"action":"DENY","rules":[{"to":[{"operation":{"paths":["/foo/{*}/bar/{**}"],"ports":["80"]}}],"when":[{"key":"request.auth.claims[a][b]","values":["x*"]}]}]}`,
		`{"action":"CUSTOM","provider":{"name":"p"},"rules":[{"from":[{"source":{"ipBlocks":["10.0.0.0/8"],"notNamespaces":["a*b"]}}]}]}`,
	} {
		f.Add(s, "/headers", "GET")
	}
	f.Fuzz(func(t *testing.T, spec, p, m string) {
		ps := &securityv1beta1.AuthorizationPolicy{}
		if protojson.Unmarshal([]byte(spec), ps) != nil {
			return
		}
		res := config.Resource{Meta: config.Meta{Kind: config.KindAuthorizationPolicy, Name: "p", Namespace: "foo"}, Spec: ps}
		e, err := Compile([]config.Resource{res}, Options{})
		if err != nil {
			return
		}
		for _, r := range []*Request{httpReq(path(p), method(m)), tcpReq(), httpReq(from(""), path(p), headers("X", p))} {
			d := e.Decide(r)
			if d.Allow && d.Action == ActionDeny {
				t.Fatalf("allowed by a DENY: %+v", d)
			}
		}
	})
}

// FuzzDecide checks one fixed policy set against arbitrary requests: no
// panic, and the deny-admin policy is never bypassed by a path that
// normalizes to /admin.
func FuzzDecide(f *testing.F) {
	e := mustCompile(f, Options{PathNormalization: NormalizeMergeSlashes},
		ap(f, "foo/deny-admin", `{"action":"DENY","rules":[{"to":[{"operation":{"paths":["/admin","/admin/*"]}}]}]}`),
		ap(f, "foo/allow", `{"rules":[{"from":[{"source":{"namespaces":["bar"]}}]},{"when":[{"key":"request.headers[X-Token]","values":["ok"]}]}]}`))
	f.Add("cluster.local/ns/bar/sa/sleep", "GET", "//admin", "ok")
	f.Add("", "POST", "/a/../admin/x", "")
	f.Fuzz(func(t *testing.T, principal, m, p, token string) {
		d := e.Decide(httpReq(from(principal), method(m), path(p), headers("X-Token", token)))
		norm, err := NormalizePath(p, NormalizeMergeSlashes)
		if err == nil && ValidMethod(m) && (norm == "/admin" || strings.HasPrefix(norm, "/admin/")) && d.Allow {
			t.Fatalf("path %q (normalized %q) allowed past deny-admin: %+v", p, norm, d)
		}
	})
}
