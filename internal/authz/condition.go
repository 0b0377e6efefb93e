package authz

import (
	"errors"
	"fmt"
	"strings"

	securityv1beta1 "istio.io/api/security/v1beta1"
)

// Condition keys, from Istio's "Authorization Policy Conditions" page.
const (
	keyHeaderPrefix = "request.headers["
	keyClaimsPrefix = "request.auth.claims["
)

var conditionKeys = map[string]attr{
	"source.ip":              attrSourceIP,
	"remote.ip":              attrRemoteIP,
	"source.namespace":       attrNamespace,
	"source.principal":       attrPrincipal,
	"request.auth.principal": attrRequestPrincipal,
	"request.auth.audiences": attrAudiences,
	"request.auth.presenter": attrPresenter,
	"destination.ip":         attrDestIP,
	"destination.port":       attrDestPort,
	"connection.sni":         attrSNI,
}

// condition compiles one `when` entry into one or two conds (values and
// notValues are AND'd).
func (c *compiler) condition(w *securityv1beta1.Condition) ([]cond, error) {
	if w == nil {
		return nil, errors.New("must not be nil")
	}
	key := w.GetKey()
	values, notValues := w.GetValues(), w.GetNotValues()
	if len(values) == 0 && len(notValues) == 0 {
		return nil, fmt.Errorf("key %q: at least one of values or notValues must be set", key)
	}
	var tmpl cond
	switch {
	case strings.HasPrefix(key, keyHeaderPrefix):
		name, ok := bracketed(key[len(keyHeaderPrefix)-1:])
		if !ok || len(name) != 1 {
			return nil, fmt.Errorf("key %q: want request.headers[NAME]", key)
		}
		tmpl = cond{attr: attrHeader, header: headerName(name[0])}
	case strings.HasPrefix(key, keyClaimsPrefix):
		path, ok := bracketed(key[len(keyClaimsPrefix)-1:])
		if !ok {
			return nil, fmt.Errorf("key %q: want request.auth.claims[NAME], or request.auth.claims[NAME][NESTED] for nested claims", key)
		}
		tmpl = cond{attr: attrClaim, claim: path}
	default:
		a, ok := conditionKeys[key]
		if !ok {
			return nil, fmt.Errorf("unknown or unsupported condition key %q", key)
		}
		tmpl = cond{attr: a}
	}
	var out []cond
	for _, list := range []struct {
		values []string
		not    bool
	}{{values, false}, {notValues, true}} {
		if len(list.values) == 0 {
			continue
		}
		vs := list.values
		if tmpl.attr == attrPrincipal {
			vs = c.tds.expand(vs)
		}
		cd, err := c.cond(tmpl.attr, list.not, vs, "")
		if err != nil {
			return nil, fmt.Errorf("key %q: %w", key, err)
		}
		cd.header, cd.claim = tmpl.header, tmpl.claim
		if tmpl.attr == attrHeader {
			// Envoy's header matcher reads "*" as presence, which holds
			// for a header that is present but empty.
			cd.anyHeader = contains(vs, "*")
		}
		out = append(out, cd)
	}
	return out, nil
}

// bracketed parses "[a][b]..." into its non-empty names.
func bracketed(s string) ([]string, bool) {
	var names []string
	for s != "" {
		if s[0] != '[' {
			return nil, false
		}
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return nil, false
		}
		name := s[1:end]
		if name == "" || strings.IndexByte(name, '[') >= 0 {
			return nil, false
		}
		names = append(names, name)
		s = s[end+1:]
	}
	return names, len(names) > 0
}

// headerName returns the name Headers.Header is asked for: the canonical
// MIME form, or one of the pseudo-headers the engine answers itself.
func headerName(n string) string {
	switch strings.ToLower(n) {
	case ":authority", "host":
		return pseudoAuthority
	case ":method":
		return pseudoMethod
	case ":path":
		return pseudoPath
	}
	return canonicalHeaderKey(n)
}

// canonicalHeaderKey returns n in canonical MIME form ("x-token" becomes
// "X-Token"), as net/textproto does, without importing the network stack
// into a decision package. Names with characters outside an HTTP token are
// returned unchanged, as textproto does.
func canonicalHeaderKey(n string) string {
	b := []byte(n)
	upper := true
	for i, c := range b {
		if !isTokenChar(c) {
			return n
		}
		switch {
		case upper && 'a' <= c && c <= 'z':
			b[i] = c - ('a' - 'A')
		case !upper && 'A' <= c && c <= 'Z':
			b[i] = c + ('a' - 'A')
		}
		upper = c == '-'
	}
	return string(b)
}

func isTokenChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
