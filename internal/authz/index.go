package authz

// ruleSet is the rules of the policies of one action, in evaluation order,
// indexed so that a decision costs about the same with 10 rules or 10,000.
//
// Most rules name their callers by exact principal ("cluster.local/ns/a/sa/b").
// A rule every one of whose `from` entries carries such a principals list
// can only match a request from one of those principals, so it is filed
// under each of them; the other rules are kept in a list tried for every
// request. A decision merges the rules filed under the request's principal
// with that list, in their original order, so the first matching rule (the
// one reported) is the same as for a plain scan.
type ruleSet struct {
	refs        []ruleRef
	byPrincipal map[string][]int32
	rest        []int32
	strict      bool // ALLOW: rules needing HTTP attributes never match TCP
}

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
			keys, ok := principalKeys(&p.rules[i])
			if !ok {
				s.rest = append(s.rest, k)
				continue
			}
			if s.byPrincipal == nil {
				s.byPrincipal = map[string][]int32{}
			}
			for _, key := range keys {
				list := s.byPrincipal[key]
				if n := len(list); n == 0 || list[n-1] != k {
					s.byPrincipal[key] = append(list, k)
				}
			}
		}
	}
	return s
}

// principalKeys returns the exact principals a request must have for rl to
// match, and whether rl is indexable that way.
func principalKeys(rl *rule) ([]string, bool) {
	if len(rl.from) == 0 {
		return nil, false
	}
	var keys []string
	for _, cl := range rl.from {
		found := false
		for i := range cl {
			c := &cl[i]
			if c.attr != attrPrincipal || c.not || c.str.present || len(c.str.prefix) > 0 || len(c.str.suffix) > 0 {
				continue
			}
			keys = append(keys, c.str.exact...)
			for v := range c.str.exactSet {
				keys = append(keys, v)
			}
			found = true
			break
		}
		if !found {
			return nil, false
		}
	}
	return keys, true
}

// first returns the first rule, in evaluation order, that matches a.
func (s *ruleSet) first(a *attrs) (*policy, *rule) {
	var cand []int32
	if s.byPrincipal != nil && a.principal != "" {
		cand = s.byPrincipal[a.principal]
	}
	rest := s.rest
	i, j := 0, 0
	for i < len(cand) || j < len(rest) {
		var k int32
		if j >= len(rest) || (i < len(cand) && cand[i] < rest[j]) {
			k = cand[i]
			i++
		} else {
			k = rest[j]
			j++
		}
		ref := &s.refs[k]
		if ref.rl.match(a, s.strict) {
			return ref.p, ref.rl
		}
	}
	return nil, nil
}
