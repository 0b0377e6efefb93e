package route

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/zmesh/zmesh/internal/labelsel"
)

// Request is what matching reads of one HTTP request. Header is keyed by
// canonical MIME header names (as net/http keeps them).
type Request struct {
	Method    string
	Scheme    string // "http" or "https"
	Authority string // the Host header, as sent
	// Path is the request target's path with its query (RequestURI).
	Path   string
	Port   uint32 // the port the app called
	Header map[string][]string
}

// stringMatch is a compiled StringMatch. An empty one (kind none) matches
// any present value.
type stringMatch struct {
	kind   matchKind
	value  string
	re     *regexp.Regexp
	ignore bool // ignore case (ignoreUriCase)
}

type matchKind uint8

const (
	matchAny matchKind = iota
	matchExact
	matchPrefix
	matchRegex
)

func compileStringMatch(m *networking.StringMatch, ignoreCase bool) (stringMatch, error) {
	out := stringMatch{ignore: ignoreCase}
	switch t := m.GetMatchType().(type) {
	case nil:
	case *networking.StringMatch_Exact:
		out.kind, out.value = matchExact, t.Exact
	case *networking.StringMatch_Prefix:
		out.kind, out.value = matchPrefix, t.Prefix
	case *networking.StringMatch_Regex:
		// Envoy's safe_regex must match the whole value.
		expr := "^(?:" + t.Regex + ")$"
		if ignoreCase {
			expr = "(?i)" + expr
		}
		re, err := regexp.Compile(expr)
		if err != nil {
			return out, fmt.Errorf("regex %q: %w", t.Regex, err)
		}
		out.kind, out.re = matchRegex, re
	}
	if ignoreCase {
		out.value = strings.ToLower(out.value)
	}
	return out, nil
}

func (m *stringMatch) match(v string) bool {
	switch m.kind {
	case matchExact:
		if m.ignore {
			return strings.EqualFold(v, m.value)
		}
		return v == m.value
	case matchPrefix:
		if m.ignore {
			return len(v) >= len(m.value) && strings.EqualFold(v[:len(m.value)], m.value)
		}
		return strings.HasPrefix(v, m.value)
	case matchRegex:
		return m.re.MatchString(v)
	}
	return true
}

// headerMatch is one headers (or withoutHeaders) entry.
type headerMatch struct {
	name string // canonical
	m    stringMatch
}

type queryMatch struct {
	name string
	m    stringMatch
}

// match is one compiled HTTPMatchRequest: every condition set must hold.
type match struct {
	uri, scheme, method, authority *stringMatch
	headers                        []headerMatch
	without                        []headerMatch
	query                          []queryMatch
	port                           uint32
}

// compileMatch compiles m; ok is false when m can never match this proxy
// (its sourceLabels, sourceNamespace or gateways rule it out), which is
// decided once here rather than per request.
func compileMatch(m *networking.HTTPMatchRequest, ns string, cfg Config) (out match, ok bool, err error) {
	if !labelsel.Matches(m.GetSourceLabels(), cfg.Labels) {
		return out, false, nil
	}
	if ns := m.GetSourceNamespace(); ns != "" && ns != cfg.Namespace {
		return out, false, nil
	}
	if !cfg.boundBy(m.GetGateways(), ns) {
		return out, false, nil
	}
	one := func(sm *networking.StringMatch, ignore bool) (*stringMatch, error) {
		if sm == nil {
			return nil, nil
		}
		c, err := compileStringMatch(sm, ignore)
		return &c, err
	}
	if out.uri, err = one(m.GetUri(), m.GetIgnoreUriCase()); err != nil {
		return out, false, fmt.Errorf("uri: %w", err)
	}
	if out.scheme, err = one(m.GetScheme(), false); err != nil {
		return out, false, fmt.Errorf("scheme: %w", err)
	}
	if out.method, err = one(m.GetMethod(), false); err != nil {
		return out, false, fmt.Errorf("method: %w", err)
	}
	if out.authority, err = one(m.GetAuthority(), false); err != nil {
		return out, false, fmt.Errorf("authority: %w", err)
	}
	for _, k := range sortedKeys(m.GetHeaders()) {
		c, err := compileStringMatch(m.GetHeaders()[k], false)
		if err != nil {
			return out, false, fmt.Errorf("headers[%s]: %w", k, err)
		}
		out.headers = append(out.headers, headerMatch{name: canonicalHeader(k), m: c})
	}
	for _, k := range sortedKeys(m.GetWithoutHeaders()) {
		c, err := compileStringMatch(m.GetWithoutHeaders()[k], false)
		if err != nil {
			return out, false, fmt.Errorf("withoutHeaders[%s]: %w", k, err)
		}
		out.without = append(out.without, headerMatch{name: canonicalHeader(k), m: c})
	}
	for _, k := range sortedKeys(m.GetQueryParams()) {
		c, err := compileStringMatch(m.GetQueryParams()[k], false)
		if err != nil {
			return out, false, fmt.Errorf("queryParams[%s]: %w", k, err)
		}
		out.query = append(out.query, queryMatch{name: k, m: c})
	}
	out.port = m.GetPort()
	return out, true, nil
}

// matches reports whether r satisfies every condition of m.
func (m *match) matches(r *Request) bool {
	if m.port != 0 && m.port != r.Port {
		return false
	}
	if m.method != nil && !m.method.match(r.Method) {
		return false
	}
	if m.scheme != nil && !m.scheme.match(r.Scheme) {
		return false
	}
	if m.authority != nil && !m.authority.match(r.Authority) {
		return false
	}
	if m.uri != nil {
		path, _, _ := strings.Cut(r.Path, "?")
		if m.uri.kind == matchPrefix {
			// Envoy's prefix is on :path, query included.
			path = r.Path
		}
		if !m.uri.match(path) {
			return false
		}
	}
	for i := range m.headers {
		h := &m.headers[i]
		vs, ok := r.Header[h.name]
		if !ok || !h.m.match(strings.Join(vs, ",")) {
			return false
		}
	}
	for i := range m.without {
		h := &m.without[i]
		if vs, ok := r.Header[h.name]; ok && h.m.match(strings.Join(vs, ",")) {
			return false
		}
	}
	if len(m.query) > 0 {
		_, raw, _ := strings.Cut(r.Path, "?")
		q, err := url.ParseQuery(raw)
		if err != nil && len(q) == 0 {
			return false
		}
		for i := range m.query {
			qm := &m.query[i]
			vs, ok := q[qm.name]
			if !ok || !qm.m.match(vs[0]) {
				return false
			}
		}
	}
	return true
}

// Match returns the first route of vs that matches r (a route with no
// match conditions matches everything), and, when it matched by uri
// prefix, that prefix (what rewrite.uri replaces). nil: no route matches,
// which Istio answers with 404.
func (vs *VirtualService) Match(r *Request) (*HTTPRoute, string) {
	if vs == nil {
		return nil, ""
	}
	for _, rt := range vs.Routes {
		if rt.matchAll {
			return rt, ""
		}
		for i := range rt.matches {
			m := &rt.matches[i]
			if m.matches(r) {
				prefix := ""
				if m.uri != nil && m.uri.kind == matchPrefix {
					prefix = m.uri.value
				}
				return rt, prefix
			}
		}
	}
	return nil, ""
}
