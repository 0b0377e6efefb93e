package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/net/http/httpguts"
	"google.golang.org/protobuf/types/known/wrapperspb"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"

	"github.com/zmesh/zmesh/internal/authz"
)

// This file is the envoyExtAuthzHttp provider: Envoy's ext_authz filter
// with an http_service, as Istio configures it. The proxy replays the
// request's head to the authorizer (same method, pathPrefix + path and
// query, Host, Authorization and the headers the provider lists, no body
// unless asked), and reads the answer: 200 allows, any other status below
// 500 denies with the authorizer's status, body and headers, and a 5xx is
// an error that failOpen or statusOnError settles.

const (
	// maxExtAuthzBody bounds includeRequestBodyInCheck.maxRequestBytes:
	// the body is held in memory for each request being checked, and a
	// uint32 would allow 4 GiB.
	maxExtAuthzBody = 16 << 20
	// extAuthzIdleConns is how many idle connections to one authorizer
	// address are kept for reuse.
	extAuthzIdleConns = 64

	// headerPartialBody tells the authorizer, when the provider includes
	// the body, whether what it got was cut at maxRequestBytes.
	headerPartialBody = "X-Envoy-Auth-Partial-Body"
	// headerAuthRemove is how an HTTP authorizer that allows a request
	// names (comma-separated) the request headers to drop before it
	// reaches the app, as Envoy reads it.
	headerAuthRemove = "X-Envoy-Auth-Headers-To-Remove"
)

// httpProvider is what an envoyExtAuthzHttp provider adds to the settings
// all providers share, compiled once per push: how to build the request
// to the authorizer and where the headers of its answer may go.
type httpProvider struct {
	// pathPrefix goes in front of the request's path; Istio requires it
	// to start with "/".
	pathPrefix string
	// include selects the client request headers sent besides those
	// Envoy always sends (Host, Authorization; the method and path are
	// the request line's).
	include headerMatcher
	// add are includeAdditionalHeadersInCheck, sorted by name. They win
	// over client headers of the same name.
	add []fixedHeader
	// body is nil unless includeRequestBodyInCheck is set.
	body *bodyLimit
	// toUpstream selects the headers of an allowing answer that replace
	// the request's on the way to the app (headersToUpstreamOnAllow).
	toUpstream headerMatcher
	// toClientOnAllow selects the headers of an allowing answer added to
	// the app's response (headersToDownstreamOnAllow); empty, none.
	toClientOnAllow headerMatcher
	// toClientOnDeny selects the headers of a denying answer that reach
	// the client (headersToDownstreamOnDeny). Empty, every header but
	// Host does, as in Envoy.
	toClientOnDeny headerMatcher
}

// fixedHeader is one of includeAdditionalHeadersInCheck: a canonical
// header name and its literal value (Envoy's %COMMAND% substitutions are
// not expanded).
type fixedHeader struct{ name, value string }

// bodyLimit is includeRequestBodyInCheck: the most body bytes to buffer
// and send, and whether a longer body is cut (partial) rather than
// refused with 413.
type bodyLimit struct {
	max     int
	partial bool
}

// compileHTTPProvider validates h as Istio does (pathPrefix starts with
// "/"; a lone "*" is no header pattern) and compiles it. An invalid
// provider fails the push, as an invalid statusOnError does, rather than
// becoming a provider whose every check fails.
func compileHTTPProvider(h *meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationHttpProvider) (*httpProvider, error) {
	hp := &httpProvider{pathPrefix: h.GetPathPrefix()}
	if p := hp.pathPrefix; p != "" {
		u, err := url.Parse(p)
		if err != nil || !strings.HasPrefix(p, "/") || u.Host != "" || u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("pathPrefix %q is not a path starting with \"/\"", p)
		}
	}
	var err error
	if hp.include, err = compileHeaderMatcher("includeRequestHeadersInCheck", h.GetIncludeRequestHeadersInCheck()); err != nil {
		return nil, err
	}
	// includeHeadersInCheck is the deprecated name of the same list,
	// read only when the new one is empty, as Istio does.
	legacy, err := compileHeaderMatcher("includeHeadersInCheck", h.GetIncludeHeadersInCheck())
	if err != nil {
		return nil, err
	}
	if len(hp.include) == 0 {
		hp.include = legacy
	}
	if hp.toUpstream, err = compileHeaderMatcher("headersToUpstreamOnAllow", h.GetHeadersToUpstreamOnAllow()); err != nil {
		return nil, err
	}
	if hp.toClientOnDeny, err = compileHeaderMatcher("headersToDownstreamOnDeny", h.GetHeadersToDownstreamOnDeny()); err != nil {
		return nil, err
	}
	if hp.toClientOnAllow, err = compileHeaderMatcher("headersToDownstreamOnAllow", h.GetHeadersToDownstreamOnAllow()); err != nil {
		return nil, err
	}
	for name, value := range h.GetIncludeAdditionalHeadersInCheck() {
		if !httpguts.ValidHeaderFieldName(name) || !httpguts.ValidHeaderFieldValue(value) {
			return nil, fmt.Errorf("includeAdditionalHeadersInCheck: %q: %q is not a valid header", name, value)
		}
		hp.add = append(hp.add, fixedHeader{http.CanonicalHeaderKey(name), value})
	}
	slices.SortFunc(hp.add, func(a, b fixedHeader) int { return strings.Compare(a.name, b.name) })
	if b := h.GetIncludeRequestBodyInCheck(); b != nil {
		n := b.GetMaxRequestBytes()
		if n == 0 || n > maxExtAuthzBody {
			return nil, fmt.Errorf("includeRequestBodyInCheck: maxRequestBytes must be 1-%d, not %d", maxExtAuthzBody, n)
		}
		hp.body = &bodyLimit{max: int(n), partial: b.GetAllowPartialMessage()}
	}
	return hp, nil
}

// headerMatcher matches header names as Istio's header lists do: "abc"
// exactly, "abc*" by prefix, "*abc" by suffix, all ignoring case.
type headerMatcher []headerPattern

type headerPattern struct {
	s    string
	kind byte // '=' exact, '^' prefix, '$' suffix
}

// compileHeaderMatcher compiles one of the provider's header lists. A lone
// "*" is refused, as Istio refuses it: it would hand the authorizer every
// credential the client sends, or let the authorizer set any header.
func compileHeaderMatcher(field string, names []string) (headerMatcher, error) {
	var m headerMatcher
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

// match reports whether name matches one of m's patterns, ignoring case.
// It does not allocate.
func (m headerMatcher) match(name string) bool {
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

// connectionHeader reports whether the canonical header name k describes
// one connection or one message's framing. Such headers never cross the
// proxy in either direction, whatever a provider's lists match: copied,
// they would corrupt the message they land in.
func connectionHeader(k string) bool {
	switch k {
	case "Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
		"Content-Length", "Host":
		return true
	}
	return false
}

// httpClient returns the pooled HTTP client for addr: HTTP/2 over mutual
// TLS expecting id when id is set (a mesh endpoint with a proxy),
// plaintext HTTP/1.1 otherwise. Redirects are answers to pass on (an
// authorizer sending the client to its login page), never followed.
func (x *extAuthz) httpClient(addr string, id spiffeid.ID) (*http.Client, error) {
	key := connKey(addr, id)
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.closed {
		return nil, errors.New("proxy is shutting down")
	}
	if c, ok := x.https[key]; ok {
		return c, nil
	}
	tr := &http.Transport{
		Proxy:                  nil,
		DialContext:            newDialer().DialContext,
		MaxIdleConnsPerHost:    extAuthzIdleConns,
		IdleConnTimeout:        clientIdleTimeout,
		DisableCompression:     true, // the body is passed on as the authorizer sent it
		MaxResponseHeaderBytes: maxHeaderBytes,
	}
	if !id.IsZero() {
		tr.TLSClientConfig = x.mtlsConfig(id)
		tr.TLSHandshakeTimeout = handshakeTimeout
		tr.ForceAttemptHTTP2 = true
	}
	c := &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	x.https[key] = c
	return c, nil
}

// askHTTP checks r with an HTTP provider. path is the normalized path
// that policies matched, the one forwarded to the app.
func (x *extAuthz) askHTTP(ctx context.Context, st *state, prov *extAuthzProvider, r *http.Request, path string) customAnswer {
	hp := prov.http
	var body []byte
	var partial bool
	if hp.body != nil {
		var ans *customAnswer
		if body, partial, ans = hp.body.read(r); ans != nil {
			return *ans
		}
	}
	addr, id, err := x.target(st, prov)
	if err != nil {
		return customAnswer{err: err}
	}
	c, err := x.httpClient(addr, id)
	if err != nil {
		return customAnswer{err: err}
	}
	defer x.closeIfShutDown(c) // after resp.Body.Close, which puts the connection back
	ctx, cancel := context.WithTimeout(ctx, prov.timeout)
	defer cancel()
	req, err := hp.request(ctx, r, addr, !id.IsZero(), path, body, partial)
	if errors.Is(err, errCheckPath) {
		// The request's fault, not the provider's: a 400 that failOpen
		// cannot turn into an allow.
		return customAnswer{verdict: authz.CustomDeny, status: http.StatusBadRequest, body: "Bad Request"}
	}
	if err != nil {
		return customAnswer{err: err}
	}
	resp, err := c.Do(req)
	if err != nil {
		return customAnswer{err: fmt.Errorf("check at %s: %w", addr, err)}
	}
	defer resp.Body.Close()
	// ctx carries the time-out, so it bounds reading the answer too.
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxExtAuthzResponse+1))
	if err != nil {
		return customAnswer{err: fmt.Errorf("check at %s: read answer: %w", addr, err)}
	}
	if len(b) > maxExtAuthzResponse {
		return customAnswer{err: fmt.Errorf("check at %s: answer larger than %d bytes", addr, maxExtAuthzResponse)}
	}
	return hp.answer(resp, b, addr)
}

// closeIfShutDown closes c's idle connections when the proxy shut down
// while c was checking a request (a shutdown past its grace period does
// not wait for handlers): close could not reach the connection then, and
// it would otherwise outlive the proxy until its idle time-out.
func (x *extAuthz) closeIfShutDown(c *http.Client) {
	x.mu.Lock()
	closed := x.closed
	x.mu.Unlock()
	if closed {
		c.CloseIdleConnections()
	}
}

// errCheckPath is a request path that cannot be put in a check request.
var errCheckPath = errors.New("check request path does not unescape")

// request builds the check request Envoy's HTTP ext_authz client sends
// for r: r's method, pathPrefix + path + r's query, r's Host and
// Authorization, the client headers the provider includes, then its fixed
// headers. Without a body, Content-Length is 0 (Go writes it for the
// methods that usually carry a body, as servers expect, and omits it for
// GET and HEAD). Headers Go would add on its own (User-Agent,
// Accept-Encoding) are not sent.
func (hp *httpProvider) request(ctx context.Context, r *http.Request, addr string, mtls bool, path string, body []byte, partial bool) (*http.Request, error) {
	var rd io.Reader
	if hp.body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, "", rd)
	if err != nil {
		return nil, fmt.Errorf("check request: %w", err)
	}
	u := &url.URL{Scheme: "http", Host: addr, RawQuery: r.URL.RawQuery}
	if mtls {
		u.Scheme = "https"
	}
	// path is escaped; keep its escaping byte for byte. A target that
	// does not unescape would go out re-escaped, a path other than the
	// one policies matched and the app would get: refuse it instead.
	target := hp.pathPrefix + path
	p, err := url.PathUnescape(target)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %v", errCheckPath, target, err)
	}
	u.Path, u.RawPath = p, target
	req.URL, req.Host = u, r.Host

	h := make(http.Header, len(hp.add)+4)
	for k, vs := range r.Header {
		if !connectionHeader(k) && (k == "Authorization" || hp.include.match(k)) {
			h[k] = vs // read only: the transport does not write to them
		}
	}
	for _, a := range hp.add {
		if a.name == "Host" {
			req.Host = a.value
			continue
		}
		h[a.name] = []string{a.value}
	}
	if hp.body != nil {
		h[headerPartialBody] = []string{strconv.FormatBool(partial)}
	}
	if _, ok := h["User-Agent"]; !ok {
		h["User-Agent"] = nil // present and empty: Go sends none
	}
	req.Header = h
	return req, nil
}

// read buffers up to max bytes of r's body for the check and puts them
// back in front of the rest, so that the app still gets it whole. A
// longer body is cut when partial messages are allowed, else refused with
// 413 before the authorizer is asked: Envoy's buffer limit takes
// precedence over failOpen. A body that cannot be read (the client went
// away or sent broken framing) is answered 400 without asking.
func (bl *bodyLimit) read(r *http.Request) (body []byte, partial bool, ans *customAnswer) {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return nil, false, nil
	}
	if r.ContentLength > int64(bl.max) && !bl.partial {
		return nil, false, &customAnswer{verdict: authz.CustomDeny, status: http.StatusRequestEntityTooLarge, body: "Payload Too Large"}
	}
	buf, err := io.ReadAll(io.LimitReader(r.Body, int64(bl.max)+1))
	if err != nil {
		return nil, false, &customAnswer{verdict: authz.CustomDeny, status: http.StatusBadRequest, body: "Bad Request"}
	}
	r.Body = rebuiltBody{io.MultiReader(bytes.NewReader(buf), r.Body), r.Body}
	if len(buf) <= bl.max {
		return buf, false, nil
	}
	if !bl.partial {
		return nil, false, &customAnswer{verdict: authz.CustomDeny, status: http.StatusRequestEntityTooLarge, body: "Payload Too Large"}
	}
	return buf[:bl.max], true, nil
}

// rebuiltBody is a request body whose start was read for the check: the
// buffered bytes, then the rest, closed through the original body.
type rebuiltBody struct {
	io.Reader
	io.Closer
}

// answer turns the authorizer's response into the proxy's verdict, as
// Envoy's HTTP ext_authz client does. 200 allows, with the headers listed
// in headersToUpstreamOnAllow for the app, and the request headers the
// authorizer names in X-Envoy-Auth-Headers-To-Remove removed. A 5xx is an
// error, not a denial: Istio's failOpen lets the request through "if the
// authorization service has returned a HTTP 5xx error", and otherwise the
// client gets statusOnError, never the authorizer's 5xx and its body.
// Any other status denies with that status, the body, and the headers
// headersToDownstreamOnDeny selects.
func (hp *httpProvider) answer(resp *http.Response, body []byte, addr string) customAnswer {
	code := resp.StatusCode
	switch {
	case code == http.StatusOK:
		ans := customAnswer{verdict: authz.CustomAllow, set: headerOptions(resp.Header, hp.toUpstream.match)}
		if len(hp.toClientOnAllow) > 0 {
			ans.respond = headerOptions(resp.Header, hp.toClientOnAllow.match)
		}
		for _, v := range resp.Header.Values(headerAuthRemove) {
			for name := range strings.SplitSeq(v, ",") {
				if name = strings.TrimSpace(name); name != "" {
					ans.remove = append(ans.remove, name)
				}
			}
		}
		return ans
	case code >= 500 && code <= 599:
		return customAnswer{err: fmt.Errorf("authorizer at %s answered %d", addr, code)}
	case code < 200 || code > 599:
		return customAnswer{err: fmt.Errorf("authorizer at %s answered an unusable status %d", addr, code)}
	}
	return customAnswer{
		verdict: authz.CustomDeny,
		status:  code,
		body:    string(body),
		headers: headerOptions(resp.Header, hp.toClientOnDeny.denyHeader),
	}
}

// denyHeader reports whether the header k of a denial reaches the client:
// every one when headersToDownstreamOnDeny is empty, else the listed ones
// and those Envoy always adds to a non-empty list (WWW-Authenticate and
// Location, without which a 401 or a redirect means nothing).
func (m headerMatcher) denyHeader(k string) bool {
	return len(m) == 0 || k == "Www-Authenticate" || k == "Location" || m.match(k)
}

// headerOptions returns the headers of h that keep selects, as options
// that replace a header of the same name and keep all of h's values for
// it (a repeated Set-Cookie stays repeated).
func headerOptions(h http.Header, keep func(string) bool) []*corev3.HeaderValueOption {
	var out []*corev3.HeaderValueOption
	for k, vs := range h {
		if connectionHeader(k) || !keep(k) {
			continue
		}
		for i, v := range vs {
			o := &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v}}
			if i > 0 {
				o.Append = wrapperspb.Bool(true)
			}
			out = append(out, o)
		}
	}
	return out
}
