package authz

import (
	"fmt"
	"strings"
)

// pathTemplate is a compiled Istio path template (Envoy URI template): a
// path whose segments may be "{*}" (exactly one non-empty segment) or "{**}"
// (anything from here on, across segments, possibly empty; only as the last
// operator).
type pathTemplate struct {
	raw  string
	toks []tmplTok
}

type tmplTok struct {
	lit string // literal text when op == 0
	op  byte   // 0 literal, '1' for {*}, '2' for {**}
}

func isPathTemplate(p string) bool {
	return strings.Contains(p, "{*}") || strings.Contains(p, "{**}")
}

// compilePathTemplate validates p per Istio's rules and compiles it.
func compilePathTemplate(p string) (pathTemplate, error) {
	t := pathTemplate{raw: p}
	segs := strings.Split(p, "/")
	sawMulti := false
	lit := ""
	for i, seg := range segs {
		if i > 0 {
			lit += "/"
		}
		switch seg {
		case "{*}", "{**}":
			if sawMulti {
				return t, fmt.Errorf("path template %q: {**} must be the last operator", p)
			}
			if lit != "" {
				t.toks = append(t.toks, tmplTok{lit: lit})
				lit = ""
			}
			if seg == "{**}" {
				sawMulti = true
				t.toks = append(t.toks, tmplTok{op: '2'})
			} else {
				t.toks = append(t.toks, tmplTok{op: '1'})
			}
		default:
			if strings.ContainsAny(seg, "*{}") {
				return t, fmt.Errorf("path template %q: segment %q mixes an operator with other characters or uses * outside {*} and {**}", p, seg)
			}
			lit += seg
		}
	}
	if lit != "" {
		t.toks = append(t.toks, tmplTok{lit: lit})
	}
	return t, nil
}

func (t *pathTemplate) match(path string) bool { return matchToks(t.toks, path) }

func matchToks(toks []tmplTok, s string) bool {
	for len(toks) > 0 {
		tk := toks[0]
		switch tk.op {
		case 0:
			if !strings.HasPrefix(s, tk.lit) {
				return false
			}
			s = s[len(tk.lit):]
			toks = toks[1:]
		case '1':
			end := strings.IndexByte(s, '/')
			if end < 0 {
				end = len(s)
			}
			if end == 0 {
				return false
			}
			// A segment operator fills the whole segment, since the
			// template's segment holds nothing else.
			s = s[end:]
			toks = toks[1:]
		case '2':
			rest := toks[1:]
			// {**} is the last operator: what follows is literal, so it
			// must be a suffix of s.
			if len(rest) == 0 {
				return true
			}
			suffix := rest[0].lit
			return len(s) >= len(suffix) && strings.HasSuffix(s, suffix)
		}
	}
	return s == ""
}
