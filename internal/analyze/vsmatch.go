package analyze

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/zmesh/zmesh/internal/config"
)

// analyzeVirtualServiceMatches reports the routes and matches of a
// VirtualService that no request can reach, as istiod's VirtualService
// validation warns of them (istioctl turns those warnings into IST0130
// and IST0131): a proxy, zmesh's as Envoy, takes the first route whose
// match a request satisfies, so a route or match behind one that takes
// all its traffic is dead configuration, most often a catch-all written
// before a specific route. Every VirtualService is checked, bound to
// sidecars or gateways, as Istio checks them.
//
// The rule is Istio's, to the letter, so that the same input gives the
// same messages as istioctl:
//   - a route without match after another route without match is
//     unreachable ("only the last rule can have no matches"), and so is
//     every match of a route after one without match ("route without
//     matches defined before");
//   - a match equal to a match of an earlier route (or an earlier match
//     of its own route), field for field, HTTP match names aside, is
//     ineffective, and a route whose matches all are is unreachable ("all
//     matches used by prior rules");
//   - for HTTP only, a match whose uri prefix extends the uri prefix of
//     an earlier match (earlier in the same route too) on the same port is
//     ineffective when httpCovers says the earlier one covers it.
//
// httpCovers compares only uri prefix, port, method, authority, headers,
// queryParams and withoutHeaders, and treats every value as the string
// "exact:V", "prefix:V" or "" (regex and presence matches), so it also
// reports matches that are in fact reachable (an earlier one restricted
// by sourceLabels, or by a header regex the later one does not share):
// istioctl does the same, and these are Info messages.
func analyzeVirtualServiceMatches(c *context) {
	for _, r := range c.in.Snapshot.List(config.KindVirtualService) {
		vs, ok := r.Spec.(*networking.VirtualService)
		if !ok {
			continue
		}
		unreachable := func(rule, reason string) {
			c.reportOn(VirtualServiceUnreachableRule, r, rule, reason)
		}
		ineffective := func(rule, match, earlier string) {
			c.reportOn(VirtualServiceIneffectiveMatch, r, rule, match, earlier)
		}
		checkHTTPMatches(vs.GetHttp(), unreachable, ineffective)
		checkL4Matches(l4Matches(vs.GetTcp()), unreachable, ineffective)
		checkL4Matches(l4Matches(vs.GetTls()), unreachable, ineffective)
	}
}

// l4Matches returns the matches of each TCP or TLS route.
func l4Matches[M proto.Message, R interface{ GetMatch() []M }](routes []R) [][]proto.Message {
	out := make([][]proto.Message, len(routes))
	for i, r := range routes {
		for _, m := range r.GetMatch() {
			out[i] = append(out[i], m)
		}
	}
	return out
}

// checkL4Matches finds, in the matches of each TCP or TLS route, the
// unreachable routes and the duplicate matches (neither has a name: Istio
// names them by index, "#N").
func checkL4Matches(routes [][]proto.Message, unreachable func(rule, reason string), ineffective func(rule, match, earlier string)) {
	index := func(n int) string { return fmt.Sprintf("#%d", n) }
	var seen []seenMatch
	catchAll := false
	for i, matches := range routes {
		if len(matches) == 0 {
			if catchAll {
				unreachable(index(i), "only the last rule can have no matches")
			}
			catchAll = true
			continue
		}
		dups := 0
		for j, m := range matches {
			if catchAll {
				unreachable(index(i), "route without matches defined before")
				continue
			}
			if k, ok := firstEqual(seen, m); ok {
				ineffective(index(i), index(j), index(k))
				dups++
				continue
			}
			seen = append(seen, seenMatch{m, i})
		}
		if dups == len(matches) {
			unreachable(index(i), "all matches used by prior rules")
		}
	}
}

// seenMatch is a match already met, and the index of its route.
type seenMatch struct {
	m    proto.Message
	rule int
}

// firstEqual returns the route of the first match in seen equal to m.
// Istio compares the matches' JSON forms; proto.Equal is the same
// equality (field for field, maps whatever their order).
func firstEqual(seen []seenMatch, m proto.Message) (int, bool) {
	for _, s := range seen {
		if proto.Equal(s.m, m) {
			return s.rule, true
		}
	}
	return 0, false
}

// checkHTTPMatches finds the unreachable HTTP routes and their duplicate
// matches as checkL4Matches does, HTTP match names aside (routes and
// matches are named by their name, quoted, when they have one), then the
// matches an earlier uri prefix match covers (httpCovers).
func checkHTTPMatches(routes []*networking.HTTPRoute, unreachable func(rule, reason string), ineffective func(rule, match, earlier string)) {
	var seen []seenMatch
	var prefixed []prefixMatch
	catchAll := false
	for i, route := range routes {
		if route == nil {
			continue
		}
		rule := httpRouteName(route, i)
		if len(route.GetMatch()) == 0 {
			if catchAll {
				unreachable(rule, "only the last rule can have no matches")
			}
			catchAll = true
			continue
		}
		dups := 0
		for j, m := range route.GetMatch() {
			if catchAll {
				unreachable(rule, "route without matches defined before")
				continue
			}
			unnamed := m
			if m.GetName() != "" {
				unnamed = proto.CloneOf(m)
				unnamed.Name = ""
			}
			if k, ok := firstEqual(seen, unnamed); ok {
				ineffective(rule, httpMatchName(m, j), httpRouteName(routes[k], k))
				dups++
				continue
			}
			seen = append(seen, seenMatch{unnamed, i})
			if p, ok := newPrefixMatch(rule, httpMatchName(m, j), m); ok {
				prefixed = append(prefixed, p)
			}
		}
		if dups == len(route.GetMatch()) {
			unreachable(rule, "all matches used by prior rules")
		}
	}
	for i, a := range prefixed {
		for _, b := range prefixed[i+1:] {
			if a.prefix == b.prefix {
				continue // equal matches were reported above; others are not compared
			}
			if httpCovers(a, b) {
				ineffective(b.rule, b.match+" of prefix "+b.prefix, a.match+" of prefix "+a.prefix+" on "+a.rule)
			}
		}
	}
}

// httpRouteName names an HTTP route as Istio does: its name quoted, else
// "#INDEX".
func httpRouteName(r *networking.HTTPRoute, i int) string {
	if r.GetName() != "" {
		return fmt.Sprintf("%q", r.GetName())
	}
	return fmt.Sprintf("#%d", i)
}

// httpMatchName names an HTTP match as Istio does: its name quoted, else
// "#INDEX".
func httpMatchName(m *networking.HTTPMatchRequest, i int) string {
	if m.GetName() != "" {
		return fmt.Sprintf("%q", m.GetName())
	}
	return fmt.Sprintf("#%d", i)
}

// prefixMatch is what Istio's overlap check reads of an HTTP match with a
// uri prefix: each string value as stringMatchKey writes it, the method
// "exact:GET" when it names none.
type prefixMatch struct {
	rule, match                       string
	prefix                            string
	port                              uint32
	method, authority                 string
	headers, queryParams, withoutHdrs map[string]string
}

func newPrefixMatch(rule, match string, m *networking.HTTPMatchRequest) (prefixMatch, bool) {
	if m.GetUri().GetPrefix() == "" {
		return prefixMatch{}, false
	}
	p := prefixMatch{rule: rule, match: match, prefix: m.GetUri().GetPrefix(), port: m.GetPort(),
		method: stringMatchKey(m.GetMethod()), authority: stringMatchKey(m.GetAuthority()),
		headers: stringMatchKeys(m.GetHeaders()), queryParams: stringMatchKeys(m.GetQueryParams()),
		withoutHdrs: stringMatchKeys(m.GetWithoutHeaders())}
	if p.method == "" {
		p.method = "exact:GET"
	}
	return p, true
}

// stringMatchKey is Istio's form of a StringMatch in the overlap check:
// "exact:V", "prefix:V", or "" for a regex, an empty value or none.
func stringMatchKey(m *networking.StringMatch) string {
	if v := m.GetExact(); v != "" {
		return "exact:" + v
	}
	if v := m.GetPrefix(); v != "" {
		return "prefix:" + v
	}
	return ""
}

func stringMatchKeys(ms map[string]*networking.StringMatch) map[string]string {
	out := make(map[string]string, len(ms))
	for k, m := range ms {
		out[k] = stringMatchKey(m)
	}
	return out
}

// httpCovers is Istio's test that the earlier prefix match a takes every
// request of the later b: b's uri prefix extends a's, the ports are equal,
// and method, authority and each header, query parameter and
// withoutHeader (the same names on both sides) are equal or a's key
// starts with b's. The last test is Istio's as written, string prefixes
// of the keys: it says "exact:GETX" covers "exact:GET", and "prefix:/ab"
// covers "prefix:/a", which the proxy would not.
func httpCovers(a, b prefixMatch) bool {
	if !strings.HasPrefix(b.prefix, a.prefix) || a.port != b.port {
		return false
	}
	if !keyCovers(a.method, b.method) || !keyCovers(a.authority, b.authority) {
		return false
	}
	return keysCover(a.headers, b.headers) && keysCover(a.queryParams, b.queryParams) && keysCover(a.withoutHdrs, b.withoutHdrs)
}

func keyCovers(a, b string) bool { return a == b || strings.HasPrefix(a, b) }

func keysCover(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || !keyCovers(v, w) {
			return false
		}
	}
	return true
}
