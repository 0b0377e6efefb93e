package authn

import (
	"net/url"
	"strings"
)

// RequestView is what request authentication reads of an HTTP request.
// Header is keyed by canonical MIME names, as net/http keys its header
// map, so a proxy passes `RequestView{Header: req.Header, RawQuery:
// req.URL.RawQuery}` without copying. Authenticate never modifies it: the
// headers to add and remove come back in the Result.
type RequestView struct {
	Header   map[string][]string
	RawQuery string // the query string, without '?'
}

// foundToken is one distinct token of a request and the locations (indexes
// into RequestPolicy.locations) it was found at.
type foundToken struct {
	token string
	locs  []int
}

// extract finds every token at the policy's locations. The same token at
// two locations is one token, verified once.
func (p *RequestPolicy) extract(r RequestView) []foundToken {
	var (
		found   []foundToken
		query   url.Values
		parsedQ bool
	)
	add := func(tok string, loc int) {
		if tok == "" {
			return
		}
		for i := range found {
			if found[i].token == tok {
				found[i].locs = append(found[i].locs, loc)
				return
			}
		}
		found = append(found, foundToken{token: tok, locs: []int{loc}})
	}
	for i, l := range p.locations {
		switch l.kind {
		case locHeader:
			for _, v := range r.Header[l.name] {
				if tok, ok := tokenFromHeader(v, l.prefix); ok {
					add(tok, i)
				}
			}
		case locParam:
			if !parsedQ {
				parsedQ = true
				if r.RawQuery != "" {
					// A malformed escape elsewhere in the query must not
					// hide a token: ParseQuery returns what it could parse.
					query, _ = url.ParseQuery(r.RawQuery)
				}
			}
			for _, v := range query[l.name] {
				add(strings.TrimSpace(v), i)
			}
		case locCookie:
			for _, h := range r.Header["Cookie"] {
				for _, v := range cookieValues(h, l.name) {
					add(v, i)
				}
			}
		}
	}
	return found
}

// tokenFromHeader extracts a token from one header value. Without a prefix
// the whole (trimmed) value is the token. With one, the value must start
// with it, compared without regard to case (HTTP authentication schemes are
// case-insensitive: "bearer x" is a bearer token), and the token is the run
// of base64url and '.' characters that follows, as Envoy extracts it; a
// value without the prefix holds no token for this location.
func tokenFromHeader(v, prefix string) (string, bool) {
	if prefix == "" {
		v = strings.TrimSpace(v)
		return v, v != ""
	}
	v = strings.TrimLeft(v, " \t")
	if len(v) < len(prefix) || !strings.EqualFold(v[:len(prefix)], prefix) {
		return "", false
	}
	v = v[len(prefix):]
	start := 0
	for start < len(v) && !isJWTChar(v[start]) {
		start++
	}
	end := start
	for end < len(v) && isJWTChar(v[end]) {
		end++
	}
	return v[start:end], end > start
}

func isJWTChar(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
		c == '-' || c == '_' || c == '.'
}

// cookieValues returns the values of the cookies called name in one Cookie
// header ("a=1; b=2"), unquoted.
func cookieValues(header, name string) []string {
	var out []string
	for header != "" {
		var part string
		part, header, _ = strings.Cut(header, ";")
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || strings.TrimSpace(k) != name {
			continue
		}
		v = strings.TrimSpace(v)
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
		if v != "" {
			out = append(out, v)
		}
	}
	return out
}
