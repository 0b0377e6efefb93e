// Package extauthz is the model of Istio's ext_authz extension providers
// (MeshConfig extensionProviders envoyExtAuthzGrpc and envoyExtAuthzHttp)
// that CUSTOM AuthorizationPolicies delegate to: Compile validates and
// compiles them once per push, with Istio's rules, into what the proxy
// needs to ask an authorizer and to read its answer. It is pure: the
// control plane refuses a mesh config with the same Compile the proxies
// use, without linking the data plane. The proxies ask providers with its
// subpackage client, which holds the I/O.
package extauthz

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
)

const (
	// DefaultTimeout bounds one check when the provider sets no
	// timeout. Istio's default is 600 s; a request held for ten minutes by
	// a black-holed authorizer is an outage, not a policy, so zmesh waits
	// 10 s and then applies failOpen / statusOnError.
	DefaultTimeout = 10 * time.Second
	// MaxBody bounds includeRequestBodyInCheck.maxRequestBytes: the body
	// is held in memory for each request being checked, and a uint32
	// would allow 4 GiB.
	MaxBody = 16 << 20
)

// Provider is one of the mesh's extensionProviders that a CUSTOM
// policy may name, compiled once per push.
type Provider struct {
	Name string
	// HTTP holds what only an envoyExtAuthzHttp provider has (package
	// client asks it over HTTP); nil for an envoyExtAuthzGrpc provider,
	// which speaks Envoy's Authorization gRPC API.
	HTTP          *HTTPProvider
	Service       string // a mesh hostname, or a host to dial directly
	Port          uint32
	Timeout       time.Duration
	FailOpen      bool
	StatusOnError int
}

// Compile turns MeshConfig extensionProviders into the
// ext_authz providers CUSTOM policies may name, and the list of their
// names for authz (never nil: a CUSTOM policy naming anything else is
// invalid and denies).
func Compile(in []*meshv1alpha1.MeshConfig_ExtensionProvider) (map[string]*Provider, []string, error) {
	out := map[string]*Provider{}
	names := []string{}
	for _, ep := range in {
		p := &Provider{Name: ep.GetName(), StatusOnError: http.StatusForbidden, Timeout: DefaultTimeout}
		var statusOnError string
		switch {
		case ep.GetEnvoyExtAuthzGrpc() != nil:
			g := ep.GetEnvoyExtAuthzGrpc()
			p.Service, p.Port, p.FailOpen = g.GetService(), g.GetPort(), g.GetFailOpen()
			statusOnError = g.GetStatusOnError()
			if d := g.GetTimeout(); d != nil {
				p.Timeout = d.AsDuration()
			}
		case ep.GetEnvoyExtAuthzHttp() != nil:
			h := ep.GetEnvoyExtAuthzHttp()
			p.Service, p.Port, p.FailOpen = h.GetService(), h.GetPort(), h.GetFailOpen()
			statusOnError = h.GetStatusOnError()
			if d := h.GetTimeout(); d != nil {
				p.Timeout = d.AsDuration()
			}
			hp, err := compileHTTPProvider(h)
			if err != nil {
				return nil, nil, fmt.Errorf("extension provider %q: %w", p.Name, err)
			}
			p.HTTP = hp
		default:
			continue // tracing, logging: not authorizers
		}
		if p.Name == "" {
			return nil, nil, errors.New("extension provider without a name")
		}
		if _, dup := out[p.Name]; dup {
			return nil, nil, fmt.Errorf("extension provider %q defined twice", p.Name)
		}
		if p.Service == "" {
			return nil, nil, fmt.Errorf("extension provider %q: service is required", p.Name)
		}
		if p.Timeout <= 0 {
			return nil, nil, fmt.Errorf("extension provider %q: timeout must be positive", p.Name)
		}
		if statusOnError != "" {
			code, err := strconv.Atoi(statusOnError)
			if err != nil || code < 200 || code > 599 {
				return nil, nil, fmt.Errorf("extension provider %q: statusOnError %q is not an HTTP status", p.Name, statusOnError)
			}
			p.StatusOnError = code
		}
		out[p.Name] = p
		names = append(names, p.Name)
	}
	return out, names, nil
}

// Validate reports whether a proxy would accept the
// ext_authz providers of a MeshConfig, with the same code the proxy
// compiles them with, so that the control plane refuses a mesh config
// every proxy would NACK instead of pushing it.
func Validate(ps []*meshv1alpha1.MeshConfig_ExtensionProvider) error {
	_, _, err := Compile(ps)
	return err
}

// HTTPProvider is what an envoyExtAuthzHttp provider adds to the settings
// all providers share, compiled once per push: how to build the request
// to the authorizer and where the headers of its answer may go.
type HTTPProvider struct {
	// PathPrefix goes in front of the request's path; Istio requires it
	// to start with "/".
	PathPrefix string
	// Include selects the client request headers sent besides those
	// Envoy always sends (Host, Authorization; the method and path are
	// the request line's).
	Include HeaderMatcher
	// Add are includeAdditionalHeadersInCheck, sorted by name. They win
	// over client headers of the same name.
	Add []FixedHeader
	// Body is nil unless includeRequestBodyInCheck is set.
	Body *BodyLimit
	// ToUpstream selects the headers of an allowing answer that replace
	// the request's on the way to the app (headersToUpstreamOnAllow).
	ToUpstream HeaderMatcher
	// ToClientOnAllow selects the headers of an allowing answer added to
	// the app's response (headersToDownstreamOnAllow); empty, none.
	ToClientOnAllow HeaderMatcher
	// ToClientOnDeny selects the headers of a denying answer that reach
	// the client (headersToDownstreamOnDeny). Empty, every header but
	// Host does, as in Envoy.
	ToClientOnDeny HeaderMatcher
}

// FixedHeader is one of includeAdditionalHeadersInCheck: a canonical
// header name and its literal value (Envoy's %COMMAND% substitutions are
// not expanded).
type FixedHeader struct{ Name, Value string }

// BodyLimit is includeRequestBodyInCheck: the most body bytes to buffer
// and send, and whether a longer body is cut (partial) rather than
// refused with 413.
type BodyLimit struct {
	Max     int
	Partial bool
}

// compileHTTPProvider validates h as Istio does (pathPrefix starts with
// "/"; a lone "*" is no header pattern) and compiles it. An invalid
// provider fails the push, as an invalid statusOnError does, rather than
// becoming a provider whose every check fails.
func compileHTTPProvider(h *meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationHttpProvider) (*HTTPProvider, error) {
	hp := &HTTPProvider{PathPrefix: h.GetPathPrefix()}
	if p := hp.PathPrefix; p != "" {
		u, err := url.Parse(p)
		if err != nil || !strings.HasPrefix(p, "/") || u.Host != "" || u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("pathPrefix %q is not a path starting with \"/\"", p)
		}
	}
	var err error
	if hp.Include, err = compileHeaderMatcher("includeRequestHeadersInCheck", h.GetIncludeRequestHeadersInCheck()); err != nil {
		return nil, err
	}
	// includeHeadersInCheck is the deprecated name of the same list,
	// read only when the new one is empty, as Istio does.
	legacy, err := compileHeaderMatcher("includeHeadersInCheck", h.GetIncludeHeadersInCheck())
	if err != nil {
		return nil, err
	}
	if len(hp.Include) == 0 {
		hp.Include = legacy
	}
	if hp.ToUpstream, err = compileHeaderMatcher("headersToUpstreamOnAllow", h.GetHeadersToUpstreamOnAllow()); err != nil {
		return nil, err
	}
	if hp.ToClientOnDeny, err = compileHeaderMatcher("headersToDownstreamOnDeny", h.GetHeadersToDownstreamOnDeny()); err != nil {
		return nil, err
	}
	if hp.ToClientOnAllow, err = compileHeaderMatcher("headersToDownstreamOnAllow", h.GetHeadersToDownstreamOnAllow()); err != nil {
		return nil, err
	}
	for name, value := range h.GetIncludeAdditionalHeadersInCheck() {
		if !httpguts.ValidHeaderFieldName(name) || !httpguts.ValidHeaderFieldValue(value) {
			return nil, fmt.Errorf("includeAdditionalHeadersInCheck: %q: %q is not a valid header", name, value)
		}
		hp.Add = append(hp.Add, FixedHeader{http.CanonicalHeaderKey(name), value})
	}
	slices.SortFunc(hp.Add, func(a, b FixedHeader) int { return strings.Compare(a.Name, b.Name) })
	if b := h.GetIncludeRequestBodyInCheck(); b != nil {
		n := b.GetMaxRequestBytes()
		if n == 0 || n > MaxBody {
			return nil, fmt.Errorf("includeRequestBodyInCheck: maxRequestBytes must be 1-%d, not %d", MaxBody, n)
		}
		hp.Body = &BodyLimit{Max: int(n), Partial: b.GetAllowPartialMessage()}
	}
	return hp, nil
}

// HeaderMatcher matches header names as Istio's header lists do: "abc"
// exactly, "abc*" by prefix, "*abc" by suffix, all ignoring case.
type HeaderMatcher []headerPattern

type headerPattern struct {
	s    string
	kind byte // '=' exact, '^' prefix, '$' suffix
}

// compileHeaderMatcher compiles one of the provider's header lists. A lone
// "*" is refused, as Istio refuses it: it would hand the authorizer every
// credential the client sends, or let the authorizer set any header.
func compileHeaderMatcher(field string, names []string) (HeaderMatcher, error) {
	var m HeaderMatcher
	for _, n := range names {
		switch {
		case n == "*":
			return nil, fmt.Errorf("%s: a lone \"*\" is not supported; use a prefix (\"x-auth-*\") or suffix (\"*-id\") match", field)
		case strings.HasPrefix(n, "*"):
			m = append(m, headerPattern{n[1:], '$'})
		case strings.HasSuffix(n, "*"):
			m = append(m, headerPattern{n[:len(n)-1], '^'})
		case n != "":
			m = append(m, headerPattern{n, '='})
		}
	}
	return m, nil
}

// Match reports whether name matches one of m's patterns, ignoring case.
// It does not allocate.
func (m HeaderMatcher) Match(name string) bool {
	for _, p := range m {
		if len(name) < len(p.s) {
			continue
		}
		switch p.kind {
		case '=':
			if len(name) == len(p.s) && strings.EqualFold(name, p.s) {
				return true
			}
		case '^':
			if strings.EqualFold(name[:len(p.s)], p.s) {
				return true
			}
		case '$':
			if strings.EqualFold(name[len(name)-len(p.s):], p.s) {
				return true
			}
		}
	}
	return false
}

// DenyHeader reports whether the header k of a denial reaches the client:
// every one when headersToDownstreamOnDeny is empty, else the listed ones
// and those Envoy always adds to a non-empty list (WWW-Authenticate and
// Location, without which a 401 or a redirect means nothing).
func (m HeaderMatcher) DenyHeader(k string) bool {
	return len(m) == 0 || k == "Www-Authenticate" || k == "Location" || m.Match(k)
}
