package config

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	networking "istio.io/api/networking/v1alpha3"
)

// validateHTTPRoute checks one http route: exactly one action (route,
// redirect or direct response), valid matches and destinations, and
// fault, retry, mirror and header settings within Istio's bounds.
func validateHTTPRoute(c *checker, path string, r *networking.HTTPRoute) {
	if r.GetDelegate() != nil {
		c.errorf("%s.delegate: delegation is not supported by zmesh", path)
	}
	actions := 0
	if len(r.GetRoute()) > 0 {
		actions++
	}
	if r.GetRedirect() != nil {
		actions++
	}
	if r.GetDirectResponse() != nil {
		actions++
	}
	if actions == 0 && r.GetDelegate() == nil {
		c.errorf("%s: one of route, redirect or directResponse must be set", path)
	}
	if actions > 1 {
		c.errorf("%s: only one of route, redirect or directResponse may be set", path)
	}
	if r.GetRewrite() != nil && (r.GetRedirect() != nil || r.GetDirectResponse() != nil) {
		c.errorf("%s.rewrite: cannot be combined with redirect or directResponse", path)
	}
	for i, m := range r.GetMatch() {
		validateHTTPMatch(c, fmt.Sprintf("%s.match[%d]", path, i), m)
	}
	for i, d := range r.GetRoute() {
		p := fmt.Sprintf("%s.route[%d]", path, i)
		if d.GetWeight() < 0 {
			c.errorf("%s.weight: must not be negative", p)
		}
		checkDestination(c, p+".destination", d.GetDestination())
		checkHeaders(c, p+".headers", d.GetHeaders())
	}
	if len(r.GetRoute()) > 1 {
		total := int64(0)
		for _, d := range r.GetRoute() {
			total += int64(d.GetWeight())
		}
		if total == 0 {
			c.errorf("%s.route: with several destinations, at least one needs a weight above 0", path)
		}
	}
	if rd := r.GetRedirect(); rd != nil {
		if rc := rd.GetRedirectCode(); rc != 0 && (rc < 300 || rc > 399) {
			c.errorf("%s.redirect.redirectCode: %d is not a 3xx code", path, rc)
		}
		if rd.GetUri() != "" && rd.GetPrefixRewrite() != "" {
			c.errorf("%s.redirect: only one of uri or prefixRewrite may be set", path)
		}
		if p, ok := rd.GetRedirectPort().(*networking.HTTPRedirect_Port); ok {
			checkPort(c, path+".redirect.port", p.Port)
		}
		switch rd.GetScheme() {
		case "", "http", "https":
		default:
			c.errorf("%s.redirect.scheme: %q is neither http nor https", path, rd.GetScheme())
		}
	}
	if dr := r.GetDirectResponse(); dr != nil {
		if s := dr.GetStatus(); s < 200 || s > 599 {
			c.errorf("%s.directResponse.status: %d is not in 200..599", path, s)
		}
	}
	if rw := r.GetRewrite(); rw != nil {
		if rw.GetUri() != "" && rw.GetUriRegexRewrite() != nil {
			c.errorf("%s.rewrite: only one of uri or uriRegexRewrite may be set", path)
		}
		if rr := rw.GetUriRegexRewrite(); rr != nil {
			if _, err := regexp.Compile(rr.GetMatch()); err != nil || rr.GetMatch() == "" {
				c.errorf("%s.rewrite.uriRegexRewrite.match: %q is not a valid regular expression", path, rr.GetMatch())
			}
		}
		if rw.GetUri() != "" && !strings.HasPrefix(rw.GetUri(), "/") {
			c.errorf("%s.rewrite.uri: %q must start with /", path, rw.GetUri())
		}
	}
	checkDuration(c, path+".timeout", r.GetTimeout(), true)
	if rt := r.GetRetries(); rt != nil {
		if rt.GetAttempts() < 0 {
			c.errorf("%s.retries.attempts: must not be negative", path)
		}
		checkDuration(c, path+".retries.perTryTimeout", rt.GetPerTryTimeout(), false)
		checkDuration(c, path+".retries.backoff", rt.GetBackoff(), false)
		if _, err := ParseRetryOn(rt.GetRetryOn()); err != nil {
			c.errorf("%s.retries.retryOn: %v", path, err)
		}
	}
	if f := r.GetFault(); f != nil {
		if f.GetDelay() == nil && f.GetAbort() == nil {
			c.errorf("%s.fault: one of delay or abort must be set", path)
		}
		if d := f.GetDelay(); d != nil {
			switch t := d.GetHttpDelayType().(type) {
			case *networking.HTTPFaultInjection_Delay_FixedDelay:
				checkDuration(c, path+".fault.delay.fixedDelay", t.FixedDelay, false)
				if t.FixedDelay == nil {
					c.errorf("%s.fault.delay.fixedDelay: must be set", path)
				}
			case *networking.HTTPFaultInjection_Delay_ExponentialDelay:
				c.errorf("%s.fault.delay.exponentialDelay: not supported", path)
			default:
				c.errorf("%s.fault.delay: fixedDelay must be set", path)
			}
			checkPercent(c, path+".fault.delay", d.GetPercent(), d.GetPercentage())
		}
		if a := f.GetAbort(); a != nil {
			switch t := a.GetErrorType().(type) {
			case *networking.HTTPFaultInjection_Abort_HttpStatus:
				if t.HttpStatus < 200 || t.HttpStatus > 599 {
					c.errorf("%s.fault.abort.httpStatus: %d is not in 200..599", path, t.HttpStatus)
				}
			default:
				c.errorf("%s.fault.abort: only httpStatus is supported", path)
			}
			checkPercent(c, path+".fault.abort", 0, a.GetPercentage())
		}
	}
	if r.GetMirror() != nil && len(r.GetMirrors()) > 0 {
		c.errorf("%s: only one of mirror or mirrors may be set", path)
	}
	if r.GetMirror() != nil {
		checkDestination(c, path+".mirror", r.GetMirror())
	}
	if (r.GetMirrorPercentage() != nil || r.GetMirrorPercent() != nil) && r.GetMirror() == nil {
		c.errorf("%s.mirrorPercentage: set without mirror", path)
	}
	if p := r.GetMirrorPercentage(); p != nil {
		checkPercent(c, path+".mirrorPercentage", 0, p)
	}
	if p := r.GetMirrorPercent(); p != nil && p.GetValue() > 100 {
		c.errorf("%s.mirrorPercent: %d is above 100", path, p.GetValue())
	}
	for i, m := range r.GetMirrors() {
		p := fmt.Sprintf("%s.mirrors[%d]", path, i)
		if m.GetDestination() == nil {
			c.errorf("%s.destination: must be set", p)
		}
		checkDestination(c, p+".destination", m.GetDestination())
		checkPercent(c, p, 0, m.GetPercentage())
	}
	checkHeaders(c, path+".headers", r.GetHeaders())
	if r.GetCorsPolicy() != nil {
		c.warnf("%s.corsPolicy: not enforced by zmesh yet", path)
	}
}

func validateHTTPMatch(c *checker, path string, m *networking.HTTPMatchRequest) {
	for i, g := range m.GetGateways() {
		if err := CheckGatewayRef(g); err != nil {
			c.errorf("%s.gateways[%d]: %v", path, i, err)
		}
	}
	checkStringMatch(c, path+".uri", m.GetUri())
	checkStringMatch(c, path+".scheme", m.GetScheme())
	checkStringMatch(c, path+".method", m.GetMethod())
	checkStringMatch(c, path+".authority", m.GetAuthority())
	for _, k := range sortedKeys(m.GetHeaders()) {
		if k == "" {
			c.errorf("%s.headers: empty header name", path)
		}
		checkPresenceMatch(c, path+".headers["+k+"]", m.GetHeaders()[k])
	}
	for _, k := range sortedKeys(m.GetWithoutHeaders()) {
		if k == "" {
			c.errorf("%s.withoutHeaders: empty header name", path)
		}
		checkPresenceMatch(c, path+".withoutHeaders["+k+"]", m.GetWithoutHeaders()[k])
	}
	for _, k := range sortedKeys(m.GetQueryParams()) {
		if k == "" {
			c.errorf("%s.queryParams: empty parameter name", path)
		}
		sm := m.GetQueryParams()[k]
		if _, ok := sm.GetMatchType().(*networking.StringMatch_Prefix); ok {
			c.errorf("%s.queryParams[%s]: prefix match is not supported, use exact or regex", path, k)
		}
		checkStringMatch(c, path+".queryParams["+k+"]", sm)
	}
	if m.GetPort() != 0 {
		checkPort(c, path+".port", m.GetPort())
	}
	checkLabels(c, path+".sourceLabels", m.GetSourceLabels(), true)
	if ns := m.GetSourceNamespace(); ns != "" {
		if err := checkNamespace(ns); err != nil {
			c.errorf("%s.sourceNamespace: %v", path, err)
		}
	}
}

// checkStringMatch requires a match type (an empty StringMatch would match
// everything in some proxies and nothing in others) and valid regexes.
func checkStringMatch(c *checker, path string, m *networking.StringMatch) {
	if m == nil {
		return
	}
	switch t := m.GetMatchType().(type) {
	case nil:
		c.errorf("%s: one of exact, prefix or regex must be set", path)
	case *networking.StringMatch_Regex:
		if _, err := regexp.Compile(t.Regex); err != nil {
			c.errorf("%s.regex: %q is not a valid RE2 regular expression", path, t.Regex)
		}
	}
}

// checkPresenceMatch is checkStringMatch for headers, where an empty
// match is Istio's presence check.
func checkPresenceMatch(c *checker, path string, m *networking.StringMatch) {
	if m.GetMatchType() != nil {
		checkStringMatch(c, path, m)
	}
}

func checkDestination(c *checker, path string, d *networking.Destination) {
	if d == nil {
		c.errorf("%s: must be set", path)
		return
	}
	if d.GetHost() == "" {
		c.errorf("%s.host: must be set", path)
	} else if strings.Contains(d.GetHost(), "*") {
		c.errorf("%s.host: %q: a destination cannot be a wildcard", path, d.GetHost())
	} else if _, err := netip.ParseAddr(d.GetHost()); err != nil {
		if err := checkHost(d.GetHost()); err != nil {
			c.errorf("%s.host: %v", path, err)
		}
	}
	if s := d.GetSubset(); s != "" {
		if err := checkName(s); err != nil {
			c.errorf("%s.subset: %v", path, err)
		}
	}
	if p := d.GetPort(); p != nil {
		checkPort(c, path+".port.number", p.GetNumber())
	}
}

// protectedHeaders are the headers the proxies themselves set to carry
// identity: a route may not forge them.
var protectedHeaders = map[string]bool{
	"x-forwarded-client-cert": true,
	"x-zmesh-source-workload": true,
	"host":                    true,
}

func checkHeaders(c *checker, path string, h *networking.Headers) {
	if h == nil {
		return
	}
	for _, op := range []struct {
		name string
		ops  *networking.Headers_HeaderOperations
	}{{"request", h.GetRequest()}, {"response", h.GetResponse()}} {
		p := path + "." + op.name
		names := append(sortedKeys(op.ops.GetSet()), sortedKeys(op.ops.GetAdd())...)
		names = append(names, op.ops.GetRemove()...)
		for _, n := range names {
			switch {
			case n == "" || strings.HasPrefix(n, ":") || strings.ContainsAny(n, " \t\r\n:"):
				c.errorf("%s: %q is not a header name that may be changed", p, n)
			case protectedHeaders[strings.ToLower(n)]:
				c.errorf("%s: header %q is set by the proxies and may not be changed by a route (use rewrite.authority for the host)", p, n)
			}
		}
		for _, k := range sortedKeys(op.ops.GetSet()) {
			if strings.ContainsAny(op.ops.GetSet()[k], "\r\n") {
				c.errorf("%s.set[%s]: value contains a line break", p, k)
			}
		}
		for _, k := range sortedKeys(op.ops.GetAdd()) {
			if strings.ContainsAny(op.ops.GetAdd()[k], "\r\n") {
				c.errorf("%s.add[%s]: value contains a line break", p, k)
			}
		}
	}
}

// checkDuration requires a valid duration of at least 1ms; zero is also
// accepted when zeroOK (a route timeout of 0s disables it).
func checkDuration(c *checker, path string, d *durationpb.Duration, zeroOK bool) {
	if d == nil {
		return
	}
	if err := d.CheckValid(); err != nil {
		c.errorf("%s: %v", path, err)
		return
	}
	v := d.AsDuration()
	if v == 0 && zeroOK {
		return
	}
	if v < time.Millisecond {
		c.errorf("%s: %s is below the minimum of 1ms", path, v)
	}
}

func checkPercent(c *checker, path string, percent int32, p *networking.Percent) {
	if percent < 0 || percent > 100 {
		c.errorf("%s.percent: %d is not in 0..100", path, percent)
	}
	if p != nil && (p.GetValue() < 0 || p.GetValue() > 100 || p.GetValue() != p.GetValue()) {
		c.errorf("%s.percentage: %v is not in 0..100", path, p.GetValue())
	}
}
