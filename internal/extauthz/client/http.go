package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/zmesh/zmesh/internal/authz"
	"github.com/zmesh/zmesh/internal/extauthz"
)

// This file is the envoyExtAuthzHttp provider: Envoy's ext_authz filter
// with an http_service, as Istio configures it. The client replays the
// request's head to the authorizer (same method, pathPrefix + path and
// query, Host, Authorization and the headers the provider lists, no body
// unless asked), and reads the answer: 200 allows, any other status below
// 500 denies with the authorizer's status, body and headers, and a 5xx is
// an error that failOpen or statusOnError settles.

const (
	// httpIdleConns is how many idle connections to one authorizer
	// address are kept for reuse.
	httpIdleConns = 64

	// headerPartialBody tells the authorizer, when the provider includes
	// the body, whether what it got was cut at maxRequestBytes.
	headerPartialBody = "X-Envoy-Auth-Partial-Body"
	// headerAuthRemove is how an HTTP authorizer that allows a request
	// names (comma-separated) the request headers to drop before it
	// reaches the app, as Envoy reads it.
	headerAuthRemove = "X-Envoy-Auth-Headers-To-Remove"
)

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

// askHTTP checks r with an HTTP provider. path is the normalized path
// that policies matched, the one forwarded to the app.
func (c *Client) askHTTP(ctx context.Context, m Mesh, prov *extauthz.Provider, r *http.Request, path string) Answer {
	hp := prov.HTTP
	var body []byte
	var partial bool
	if hp.Body != nil {
		var ans *Answer
		if body, partial, ans = readCheckBody(hp.Body, r); ans != nil {
			return *ans
		}
	}
	addr, id, err := target(m.Services, prov)
	if err != nil {
		return Answer{Err: err}
	}
	hc, err := c.httpClient(addr, id)
	if err != nil {
		return Answer{Err: err}
	}
	defer c.closeIfShutDown(hc) // after resp.Body.Close, which puts the connection back
	ctx, cancel := context.WithTimeout(ctx, prov.Timeout)
	defer cancel()
	req, err := httpRequest(hp, ctx, r, addr, !id.IsZero(), path, body, partial)
	if errors.Is(err, errCheckPath) {
		// The request's fault, not the provider's: a 400 that failOpen
		// cannot turn into an allow.
		return Answer{Verdict: authz.CustomDeny, Status: http.StatusBadRequest, Body: "Bad Request"}
	}
	if err != nil {
		return Answer{Err: err}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return Answer{Err: fmt.Errorf("check at %s: %w", addr, err)}
	}
	defer resp.Body.Close()
	// ctx carries the time-out, so it bounds reading the answer too.
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return Answer{Err: fmt.Errorf("check at %s: read answer: %w", addr, err)}
	}
	if len(b) > maxResponse {
		return Answer{Err: fmt.Errorf("check at %s: answer larger than %d bytes", addr, maxResponse)}
	}
	return httpAnswer(hp, resp, b, addr)
}

// errCheckPath is a request path that cannot be put in a check request.
var errCheckPath = errors.New("check request path does not unescape")

// httpRequest builds the check request Envoy's HTTP ext_authz client
// sends for r: r's method, pathPrefix + path + r's query, r's Host and
// Authorization, the client headers the provider includes, then its fixed
// headers. Without a body, Content-Length is 0 (Go writes it for the
// methods that usually carry a body, as servers expect, and omits it for
// GET and HEAD). Headers Go would add on its own (User-Agent,
// Accept-Encoding) are not sent.
func httpRequest(hp *extauthz.HTTPProvider, ctx context.Context, r *http.Request, addr string, mtls bool, path string, body []byte, partial bool) (*http.Request, error) {
	var rd io.Reader
	if hp.Body != nil {
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
	target := hp.PathPrefix + path
	p, err := url.PathUnescape(target)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %v", errCheckPath, target, err)
	}
	u.Path, u.RawPath = p, target
	req.URL, req.Host = u, r.Host

	h := make(http.Header, len(hp.Add)+4)
	for k, vs := range r.Header {
		if !connectionHeader(k) && (k == "Authorization" || hp.Include.Match(k)) {
			h[k] = vs // read only: the transport does not write to them
		}
	}
	for _, a := range hp.Add {
		if a.Name == "Host" {
			req.Host = a.Value
			continue
		}
		h[a.Name] = []string{a.Value}
	}
	if hp.Body != nil {
		h[headerPartialBody] = []string{strconv.FormatBool(partial)}
	}
	if _, ok := h["User-Agent"]; !ok {
		h["User-Agent"] = nil // present and empty: Go sends none
	}
	req.Header = h
	return req, nil
}

// readCheckBody buffers up to bl.Max bytes of r's body for the check and
// puts them back in front of the rest, so that the app still gets it
// whole. A longer body is cut when partial messages are allowed, else
// refused with 413 before the authorizer is asked: Envoy's buffer limit
// takes precedence over failOpen. A body that cannot be read (the client
// went away or sent broken framing) is answered 400 without asking.
func readCheckBody(bl *extauthz.BodyLimit, r *http.Request) (body []byte, partial bool, ans *Answer) {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return nil, false, nil
	}
	if r.ContentLength > int64(bl.Max) && !bl.Partial {
		return nil, false, &Answer{Verdict: authz.CustomDeny, Status: http.StatusRequestEntityTooLarge, Body: "Payload Too Large"}
	}
	buf, err := io.ReadAll(io.LimitReader(r.Body, int64(bl.Max)+1))
	if err != nil {
		return nil, false, &Answer{Verdict: authz.CustomDeny, Status: http.StatusBadRequest, Body: "Bad Request"}
	}
	r.Body = rebuiltBody{io.MultiReader(bytes.NewReader(buf), r.Body), r.Body}
	if len(buf) <= bl.Max {
		return buf, false, nil
	}
	if !bl.Partial {
		return nil, false, &Answer{Verdict: authz.CustomDeny, Status: http.StatusRequestEntityTooLarge, Body: "Payload Too Large"}
	}
	return buf[:bl.Max], true, nil
}

// rebuiltBody is a request body whose start was read for the check: the
// buffered bytes, then the rest, closed through the original body.
type rebuiltBody struct {
	io.Reader
	io.Closer
}

// httpAnswer turns the authorizer's response into the verdict, as
// Envoy's HTTP ext_authz client does. 200 allows, with the headers listed
// in headersToUpstreamOnAllow for the app, and the request headers the
// authorizer names in X-Envoy-Auth-Headers-To-Remove removed. A 5xx is an
// error, not a denial: Istio's failOpen lets the request through "if the
// authorization service has returned a HTTP 5xx error", and otherwise the
// client gets statusOnError, never the authorizer's 5xx and its body.
// Any other status denies with that status, the body, and the headers
// headersToDownstreamOnDeny selects.
func httpAnswer(hp *extauthz.HTTPProvider, resp *http.Response, body []byte, addr string) Answer {
	code := resp.StatusCode
	switch {
	case code == http.StatusOK:
		ans := Answer{Verdict: authz.CustomAllow, Set: headerOptions(resp.Header, hp.ToUpstream.Match)}
		if len(hp.ToClientOnAllow) > 0 {
			ans.Respond = headerOptions(resp.Header, hp.ToClientOnAllow.Match)
		}
		for _, v := range resp.Header.Values(headerAuthRemove) {
			for name := range strings.SplitSeq(v, ",") {
				if name = strings.TrimSpace(name); name != "" {
					ans.Remove = append(ans.Remove, name)
				}
			}
		}
		return ans
	case code >= 500 && code <= 599:
		return Answer{Err: fmt.Errorf("authorizer at %s answered %d", addr, code)}
	case code < 200 || code > 599:
		return Answer{Err: fmt.Errorf("authorizer at %s answered an unusable status %d", addr, code)}
	}
	return Answer{
		Verdict: authz.CustomDeny,
		Status:  code,
		Body:    string(body),
		Headers: headerOptions(resp.Header, hp.ToClientOnDeny.DenyHeader),
	}
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
