package authz

// ruleSet is the rules of the policies of one action, in evaluation order,
// indexed so that a decision costs about the same with 10 rules or 10,000.
//
// Most rules name their callers by exact principal ("cluster.local/ns/a/sa/b")
// or exact namespace. A rule every one of whose `from` entries carries such
// a principals list can only match a request from one of those principals,
// so it is filed under each of them; likewise for namespaces. The other
// rules are kept in a list tried for every request. A decision merges the
// rules filed under the request's principal and namespace with that list,
// in their original order, so the first matching rule (the one reported) is
// the same as for a plain scan.
type ruleSet struct {
	refs        []ruleRef
	byPrincipal map[string][]int32
	byNamespace map[string][]int32
	rest        []int32
	strict      bool // ALLOW: rules needing HTTP attributes never match TCP
}

const maxOrdinal = 1<<31 - 1

type ruleRef struct {
	p  *policy
	rl *rule
}

func newRuleSet(ps []*policy, strict bool) ruleSet {
	s := ruleSet{strict: strict}
	for _, p := range ps {
		for i := range p.rules {
			k := int32(len(s.refs))
			s.refs = append(s.refs, ruleRef{p, &p.rules[i]})
			if keys, ok := indexKeys(&p.rules[i], attrPrincipal); ok {
				s.byPrincipal = file(s.byPrincipal, keys, k)
			} else if keys, ok := indexKeys(&p.rules[i], attrNamespace); ok {
				s.byNamespace = file(s.byNamespace, keys, k)
			} else {
				s.rest = append(s.rest, k)
			}
		}
	}
	return s
}

func file(m map[string][]int32, keys []string, k int32) map[string][]int32 {
	if m == nil {
		m = map[string][]int32{}
	}
	for _, key := range keys {
		list := m[key]
		if n := len(list); n == 0 || list[n-1] != k {
			m[key] = append(list, k)
		}
	}
	return m
}

// indexKeys returns the exact principals (or namespaces) a request must
// have for rl to match, and whether rl is indexable that way: every `from`
// entry has a positive list of a of exact values only.
func indexKeys(rl *rule, a attr) ([]string, bool) {
	if len(rl.from) == 0 {
		return nil, false
	}
	var keys []string
	for _, cl := range rl.from {
		found := false
		for i := range cl {
			c := &cl[i]
			if c.attr != a || c.not {
				continue
			}
			if ks, ok := c.exactValues(); ok {
				keys = append(keys, ks...)
				found = true
				break
			}
		}
		if !found {
			return nil, false
		}
	}
	return keys, true
}

// exactValues returns the values of a principal or namespace condition
// when all of them are exact.
func (c *cond) exactValues() ([]string, bool) {
	switch c.attr {
	case attrPrincipal:
		m := &c.str
		if m.present || len(m.prefix) > 0 || len(m.suffix) > 0 {
			return nil, false
		}
		keys := append([]string(nil), m.exact...)
		for v := range m.exactSet {
			keys = append(keys, v)
		}
		return keys, true
	case attrNamespace:
		if len(c.ns.globs) > 0 {
			return nil, false
		}
		return c.ns.exact, true
	}
	return nil, false
}

// first returns the first rule, in evaluation order, that matches a.
func (s *ruleSet) first(a *attrs) (*policy, *rule) {
	var byP, byNS []int32
	if s.byPrincipal != nil && a.principal != "" {
		byP = s.byPrincipal[a.principal]
	}
	if s.byNamespace != nil && a.nsOK {
		byNS = s.byNamespace[a.ns]
	}
	rest := s.rest
	// Merge three ascending lists of rule ordinals.
	for len(byP) > 0 || len(byNS) > 0 || len(rest) > 0 {
		k := int32(maxOrdinal)
		if len(byP) > 0 {
			k = byP[0]
		}
		if len(byNS) > 0 && byNS[0] < k {
			k = byNS[0]
		}
		if len(rest) > 0 && rest[0] < k {
			k = rest[0]
		}
		switch {
		case len(byP) > 0 && byP[0] == k:
			byP = byP[1:]
		case len(byNS) > 0 && byNS[0] == k:
			byNS = byNS[1:]
		default:
			rest = rest[1:]
		}
		ref := &s.refs[k]
		if ref.rl.match(a, s.strict) {
			return ref.p, ref.rl
		}
	}
	return nil, nil
}
