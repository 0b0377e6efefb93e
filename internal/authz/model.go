package authz

import (
	"net/netip"
	"strings"
)

// attr names the request attribute a condition reads.
type attr uint8

const (
	attrPrincipal        attr = iota + 1 // source.principal, principals
	attrNamespace                        // source.namespace, namespaces
	attrServiceAccount                   // serviceAccounts
	attrTrustDomain                      // trustDomains
	attrRequestPrincipal                 // request.auth.principal, requestPrincipals
	attrSourceIP                         // source.ip, ipBlocks
	attrRemoteIP                         // remote.ip, remoteIpBlocks
	attrDestIP                           // destination.ip
	attrDestPort                         // destination.port, ports
	attrSNI                              // connection.sni
	attrHost                             // hosts
	attrMethod                           // methods
	attrPath                             // paths
	attrHeader                           // request.headers[...]
	attrAudiences                        // request.auth.audiences
	attrPresenter                        // request.auth.presenter
	attrClaim                            // request.auth.claims[...]
)

// httpOnly reports whether the attribute exists only for HTTP requests:
// Istio's conditions page lists these as "HTTP only".
func (a attr) httpOnly() bool {
	switch a {
	case attrRequestPrincipal, attrHost, attrMethod, attrPath, attrHeader,
		attrAudiences, attrPresenter, attrClaim:
		return true
	}
	return false
}

// cond is one compiled field of a source or operation (principals,
// notPaths, ...) or one `when` condition's values or notValues: true when
// any value matches, inverted for the not-forms.
type cond struct {
	attr attr
	not  bool

	str       strMatcher     // string attributes
	ns        globMatcher    // attrNamespace
	sas       []string       // attrServiceAccount: "/ns/NS/sa/SA" suffixes
	nets      []netip.Prefix // IP attributes
	ports     []uint16       // attrDestPort
	templates []pathTemplate // attrPath: path templates
	header    string         // attrHeader: canonical name, or a pseudo-header
	anyHeader bool           // attrHeader: "*" given (presence, even empty)
	claim     []string       // attrClaim: path into nested claims
}

// clause is a conjunction: one source, one operation, or a rule's `when`.
type clause []cond

// rule is one compiled Rule: any `from` clause, and any `to` clause, and
// all `when` conditions.
type rule struct {
	index    int
	from     []clause
	to       []clause
	when     clause
	httpOnly bool // reads an HTTP-only attribute somewhere
	reason   string
	// CUSTOM policies only: reasons for a denial by the provider, for a
	// provider that was not consulted, and for an unusable provider.
	reasonDenied, reasonUnasked, reasonInvalid string
}

// policy is one compiled AuthorizationPolicy.
type policy struct {
	key      string // NAMESPACE/NAME
	action   Action
	provider string
	dryRun   bool
	// invalidProvider is set for a CUSTOM policy whose provider cannot be
	// used (unknown to the mesh, or one of several on the workload): the
	// requests it matches are denied, as Istio does.
	invalidProvider bool
	rules           []rule
}

// attrs are the request's attributes, derived once per decision.
type attrs struct {
	r         *Request
	http      bool
	principal string
	td        string
	ns        string
	nsOK      bool
	remote    netip.Addr
	path      string // normalized, without query
}

const spiffePrefix = "spiffe://"

// load derives the attributes of r. It returns a non-empty reason when the
// request must be rejected before policies are consulted.
func (a *attrs) load(r *Request, n PathNormalization) string {
	a.r = r
	a.http = r.HTTP
	a.principal = strings.TrimPrefix(r.SourcePrincipal, spiffePrefix)
	if a.principal != "" {
		a.td, a.ns, a.nsOK = splitPrincipal(a.principal)
	}
	a.remote = r.RemoteIP
	if !a.remote.IsValid() {
		a.remote = r.SourceIP
	}
	if !r.HTTP {
		return ""
	}
	if !ValidMethod(r.Method) {
		return reasonBadMethod
	}
	p, err := NormalizePath(r.Path, n)
	if err != nil {
		return err.Error()
	}
	a.path = p
	return ""
}

const reasonBadMethod = "request rejected: HTTP method missing or not upper case"

// ValidMethod implements Istio's normalization rule for methods: a method
// that is not upper case is rejected (HTTP 400), so "get" cannot slip past
// a policy written for "GET".
func ValidMethod(m string) bool {
	if m == "" {
		return false
	}
	for i := 0; i < len(m); i++ {
		if c := m[i]; 'a' <= c && c <= 'z' || c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

func (rl *rule) match(a *attrs, strict bool) bool {
	// Istio on TCP traffic: a rule of an ALLOW policy that needs an
	// HTTP-only attribute is dropped (never matches); for the other actions
	// the HTTP-only fields are dropped and the rest of the rule still
	// matches (allConds skips them).
	if !a.http && strict && rl.httpOnly {
		return false
	}
	if len(rl.from) > 0 && !anyClause(rl.from, a) {
		return false
	}
	if len(rl.to) > 0 && !anyClause(rl.to, a) {
		return false
	}
	return allConds(rl.when, a)
}

func anyClause(cs []clause, a *attrs) bool {
	for _, c := range cs {
		if allConds(c, a) {
			return true
		}
	}
	return false
}

func allConds(cs clause, a *attrs) bool {
	for i := range cs {
		c := &cs[i]
		if !a.http && c.attr.httpOnly() {
			continue
		}
		if !c.eval(a) {
			return false
		}
	}
	return true
}

// eval reports whether the condition holds: some value matches the
// attribute (none does, for the not-forms). A missing attribute matches no
// value, so a not-form holds for it: `notPrincipals: ["*"]` holds for a
// plaintext peer, as in Istio.
func (c *cond) eval(a *attrs) bool {
	var m bool
	switch c.attr {
	case attrPrincipal:
		m = c.str.match(a.principal)
	case attrNamespace:
		m = a.nsOK && c.ns.match(a.ns)
	case attrServiceAccount:
		m = matchServiceAccount(c.sas, a.principal)
	case attrTrustDomain:
		m = a.principal != "" && c.str.match(a.td)
	case attrRequestPrincipal:
		m = c.str.match(a.r.RequestPrincipal)
	case attrSourceIP:
		m = matchNets(c.nets, a.r.SourceIP)
	case attrRemoteIP:
		m = matchNets(c.nets, a.remote)
	case attrDestIP:
		m = matchNets(c.nets, a.r.DestinationIP)
	case attrDestPort:
		for _, p := range c.ports {
			if p == a.r.DestinationPort {
				m = true
				break
			}
		}
	case attrSNI:
		m = c.str.match(a.r.SNI)
	case attrHost:
		m = c.str.match(a.r.Host)
	case attrMethod:
		m = c.str.match(a.r.Method)
	case attrPath:
		m = c.str.match(a.path)
		for i := 0; !m && i < len(c.templates); i++ {
			m = c.templates[i].match(a.path)
		}
	case attrHeader:
		v, ok := a.header(c.header)
		m = ok && (c.anyHeader || c.str.match(v))
	case attrAudiences:
		for _, v := range a.r.Audiences {
			if c.str.match(v) {
				m = true
				break
			}
		}
	case attrPresenter:
		m = c.str.match(a.r.Presenter)
	case attrClaim:
		m = matchClaim(&c.str, a.r.Claims, c.claim)
	}
	return m != c.not
}

// Pseudo-header names a `request.headers[...]` condition may use; they
// read the request line rather than the header map.
const (
	pseudoAuthority = ":authority"
	pseudoMethod    = ":method"
	pseudoPath      = ":path"
)

func (a *attrs) header(name string) (string, bool) {
	switch name {
	case pseudoAuthority:
		return a.r.Host, a.r.Host != ""
	case pseudoMethod:
		return a.r.Method, true
	case pseudoPath:
		return a.path, true
	}
	if a.r.Headers == nil {
		return "", false
	}
	return a.r.Headers.Header(name)
}

func matchNets(nets []netip.Prefix, ip netip.Addr) bool {
	if !ip.IsValid() {
		return false
	}
	ip = ip.Unmap()
	for _, n := range nets {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

// matchServiceAccount reports whether principal is TD/ns/NS/sa/SA for one
// of the given "/ns/NS/sa/SA" suffixes and any single trust domain.
func matchServiceAccount(sas []string, principal string) bool {
	for _, s := range sas {
		if len(principal) > len(s) && strings.HasSuffix(principal, s) &&
			strings.IndexByte(principal[:len(principal)-len(s)], '/') < 0 {
			return true
		}
	}
	return false
}

// matchClaim reports whether the claim at path is a string that matches,
// or a list with a string element that matches. Claims of other types never
// match: Istio supports string and list-of-string claims only.
func matchClaim(m *strMatcher, claims map[string]any, path []string) bool {
	cur := claims
	for i, k := range path {
		v, ok := cur[k]
		if !ok {
			return false
		}
		if i < len(path)-1 {
			if cur, ok = v.(map[string]any); !ok {
				return false
			}
			continue
		}
		switch v := v.(type) {
		case string:
			return m.match(v)
		case []string:
			for _, s := range v {
				if m.match(s) {
					return true
				}
			}
		case []any:
			for _, e := range v {
				if s, ok := e.(string); ok && m.match(s) {
					return true
				}
			}
		}
	}
	return false
}
