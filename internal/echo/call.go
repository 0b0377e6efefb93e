package echo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// MaxCallBody bounds how much of an upstream body /call reads and returns:
// 1 MiB. A longer body is cut there and the answer says so (Truncated).
const MaxCallBody = 1 << 20

// CallResult is the JSON answer of /call when the upstream call was made,
// whatever status it returned: the caller reads the upstream status here,
// while the /call response itself is 200.
type CallResult struct {
	URL       string `json:"url"`
	Status    int    `json:"status"`
	Body      string `json:"body"`
	Truncated bool   `json:"truncated,omitempty"`
}

// serveCall answers /call/HOST/PATH?Q by making GET http://HOST/PATH?Q
// with the Server's client (through the outbound proxy when HTTP_PROXY is
// set) and reporting what came back.
func (s *Server) serveCall(w http.ResponseWriter, r *http.Request) {
	if !allowRead(w, r) {
		return
	}
	target, err := callTarget(r.URL.EscapedPath(), r.URL.RawQuery)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	res, err := s.call(r.Context(), target)
	if err != nil {
		s.log.Debug("echo: call failed", "app", s.name, "url", target, "error", err)
		writeError(w, http.StatusBadGateway, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// call makes one bounded GET of target.
func (s *Server) call(ctx context.Context, target string) (CallResult, error) {
	ctx, cancel := context.WithTimeout(ctx, s.callTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return CallResult{}, fmt.Errorf("call %s: %w", target, err)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return CallResult{}, callError(ctx, target, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxCallBody+1))
	if err != nil {
		return CallResult{}, callError(ctx, target, fmt.Errorf("read body: %w", err))
	}
	res := CallResult{URL: target, Status: resp.StatusCode}
	if len(body) > MaxCallBody {
		body, res.Truncated = body[:MaxCallBody], true
	}
	res.Body = string(body)
	return res, nil
}

// callError names a time-out as such: the caller should know whether the
// upstream refused or just never answered.
func callError(ctx context.Context, target string, err error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("call %s: timed out: %w", target, err)
	}
	var uerr *url.Error
	if errors.As(err, &uerr) { // already says "Get URL: ..."
		return fmt.Errorf("call: %w", err)
	}
	return fmt.Errorf("call %s: %w", target, err)
}

// callTarget turns the escaped path of a /call request and its raw query
// into the URL to fetch: /call/HOST/REST?Q -> http://HOST/REST?Q. HOST is
// a host name or IP, optionally with a port; anything else (user info,
// empty host, characters outside a host name) is refused, so a request
// can never name a URL other than the one it shows.
func callTarget(escapedPath, rawQuery string) (string, error) {
	rest, ok := strings.CutPrefix(escapedPath, "/call/")
	if !ok {
		return "", errors.New("call: path must be /call/HOST/PATH")
	}
	host, path, _ := strings.Cut(rest, "/")
	if host == "" {
		return "", errors.New("call: missing host: path must be /call/HOST/PATH")
	}
	if !validHost(host) {
		return "", fmt.Errorf("call: invalid host %q", host)
	}
	target := "http://" + host + "/" + path
	if rawQuery != "" {
		target += "?" + rawQuery
	}
	u, err := url.Parse(target)
	if err != nil {
		return "", fmt.Errorf("call: invalid target: %w", err)
	}
	if u.Host != host || u.User != nil {
		return "", fmt.Errorf("call: invalid host %q", host)
	}
	return target, nil
}

// validHost reports whether h uses only the characters of a DNS name, an
// IPv4 or bracketed IPv6 address, and a port.
func validHost(h string) bool {
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.', c == '-', c == '_', c == ':', c == '[', c == ']':
		default:
			return false
		}
	}
	return true
}
