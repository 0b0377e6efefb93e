package authz

import "strings"

// trustDomains is the mesh trust domain followed by its aliases.
type trustDomains []string

func newTrustDomains(o Options) trustDomains {
	td := o.TrustDomain
	if td == "" {
		td = defaultTrustDomain
	}
	out := trustDomains{td}
	for _, a := range o.TrustDomainAliases {
		if a != "" && !out.has(a) {
			out = append(out, a)
		}
	}
	return out
}

func (t trustDomains) has(td string) bool {
	for _, x := range t {
		if x == td {
			return true
		}
	}
	return false
}

// expand rewrites principal values for trust domain migration, as Istio
// does: a principal whose trust domain is the mesh's, one of its aliases, or
// "cluster.local" (which in policies always stands for the local trust
// domain) is replaced by the same principal in every trust domain of the
// mesh. Values that do not name a trust domain ("*", "*/ns/foo/sa/bar") or
// name a foreign one are kept as written.
//
// Istio drops a principal it cannot parse as TD/ns/NS/sa/SA in this step
// (with a log line); we keep it unchanged instead, since dropping a value
// from a DENY list would widen access.
func (t trustDomains) expand(values []string) []string {
	var out []string
	for _, v := range values {
		slash := strings.IndexByte(v, '/')
		if strings.HasPrefix(v, "*") || slash <= 0 {
			out = append(out, v)
			continue
		}
		td, rest := v[:slash], v[slash:]
		if td != defaultTrustDomain && !t.has(td) {
			out = append(out, v)
			continue
		}
		for _, x := range t {
			out = appendUnique(out, x+rest)
		}
	}
	return out
}

func appendUnique(list []string, v string) []string {
	for _, x := range list {
		if x == v {
			return list
		}
	}
	return append(list, v)
}

// splitPrincipal returns the trust domain and namespace of an Istio
// principal "TD/ns/NS/sa/SA" (a leading "spiffe://" already removed).
// nsOK is false when the principal carries no "/ns/NAME/" part.
func splitPrincipal(p string) (td, ns string, nsOK bool) {
	slash := strings.IndexByte(p, '/')
	if slash < 0 {
		return p, "", false
	}
	td = p[:slash]
	i := strings.Index(p, "/ns/")
	if i < 0 {
		return td, "", false
	}
	rest := p[i+4:]
	end := strings.IndexByte(rest, '/')
	if end < 0 {
		return td, "", false
	}
	return td, rest[:end], true
}
