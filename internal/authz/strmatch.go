package authz

import "strings"

// strMatcher is one compiled list of Istio string values, OR'd. Each value
// is, as in every Istio string field: exact "abc", prefix "abc*", suffix
// "*abc", or presence "*" (any non-empty value). A value is read in that
// order, as Istio does: "*abc*" is the suffix "abc*".
type strMatcher struct {
	fold     bool // compare case-insensitively (hosts)
	present  bool // "*" given
	exact    []string
	exactSet map[string]struct{} // exact values, when many and case-sensitive
	prefix   []string
	suffix   []string
}

// exactSetMin is the number of exact values from which a map beats a scan.
const exactSetMin = 8

func newStrMatcher(values []string, fold bool) strMatcher {
	m := strMatcher{fold: fold}
	for _, v := range values {
		if fold {
			v = strings.ToLower(v)
		}
		switch {
		case v == "*":
			m.present = true
		case strings.HasPrefix(v, "*"):
			m.suffix = append(m.suffix, v[1:])
		case strings.HasSuffix(v, "*"):
			m.prefix = append(m.prefix, v[:len(v)-1])
		default:
			m.exact = append(m.exact, v)
		}
	}
	if !fold && len(m.exact) >= exactSetMin {
		m.exactSet = make(map[string]struct{}, len(m.exact))
		for _, v := range m.exact {
			m.exactSet[v] = struct{}{}
		}
		m.exact = nil
	}
	return m
}

func (m *strMatcher) match(v string) bool {
	if m.present && v != "" {
		return true
	}
	if m.fold {
		for _, e := range m.exact {
			if strings.EqualFold(v, e) {
				return true
			}
		}
		for _, p := range m.prefix {
			if len(v) >= len(p) && strings.EqualFold(v[:len(p)], p) {
				return true
			}
		}
		for _, s := range m.suffix {
			if len(v) >= len(s) && strings.EqualFold(v[len(v)-len(s):], s) {
				return true
			}
		}
		return false
	}
	if m.exactSet != nil {
		if _, ok := m.exactSet[v]; ok {
			return true
		}
	}
	for _, e := range m.exact {
		if v == e {
			return true
		}
	}
	for _, p := range m.prefix {
		if strings.HasPrefix(v, p) {
			return true
		}
	}
	for _, s := range m.suffix {
		if strings.HasSuffix(v, s) {
			return true
		}
	}
	return false
}

// globMatcher matches Istio's namespace values, which Istio turns into the
// regular expression `.*/ns/VALUE/.*` with every "*" replaced by ".*": so
// "*" may appear anywhere and matches any run of characters, including none.
type globMatcher struct {
	exact []string // values without "*"
	globs []string
}

func newGlobMatcher(values []string) globMatcher {
	var g globMatcher
	for _, v := range values {
		if strings.Contains(v, "*") {
			g.globs = append(g.globs, v)
		} else {
			g.exact = append(g.exact, v)
		}
	}
	return g
}

func (g *globMatcher) match(v string) bool {
	for _, e := range g.exact {
		if v == e {
			return true
		}
	}
	for _, p := range g.globs {
		if glob(p, v) {
			return true
		}
	}
	return false
}

// glob matches v against p where "*" matches any run of bytes. It is linear
// in practice (greedy with one backtrack point) and never allocates.
func glob(p, v string) bool {
	px, vx := 0, 0
	starP, starV := -1, 0
	for vx < len(v) || px < len(p) {
		if px < len(p) {
			if p[px] == '*' {
				starP, starV = px, vx
				px++
				continue
			}
			if vx < len(v) && p[px] == v[vx] {
				px++
				vx++
				continue
			}
		}
		if starP >= 0 && starV < len(v) {
			starV++
			px, vx = starP+1, starV
			continue
		}
		return false
	}
	return true
}
