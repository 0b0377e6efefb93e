package route

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/zmesh/zmesh/internal/config"
)

// HTTPRoute is one compiled http route: where a matching request goes
// and what is done to it. Exactly one of Destinations, Redirect and
// Direct is set.
type HTTPRoute struct {
	Name         string
	matchAll     bool
	matches      []match
	Destinations []Destination
	totalWeight  uint64
	Redirect     *Redirect
	Direct       *DirectResponse
	Rewrite      *Rewrite
	// Timeout bounds the whole request, retries included; 0: none.
	Timeout time.Duration
	Retry   Retry
	// Fault is nil when the route injects none. With a fault, Istio
	// enables neither time-out nor retries: so Timeout is 0 and Retry
	// has no attempts.
	Fault   *Fault
	Mirrors []Mirror
	Headers HeaderOps
}

// Destination is one weighted destination, or a mirror's target.
type Destination struct {
	Host string // FQDN
	Port uint32 // 0: the port the app called
	// Subset names a DestinationRule subset of Host ("" for every
	// endpoint). The proxy resolves it against the DestinationRule that
	// governs Host; one that no rule defines has no endpoints, and the
	// request fails closed (503).
	Subset  string
	Weight  uint32
	Headers HeaderOps
}

// Redirect is an http route's redirect.
type Redirect struct {
	URI, PrefixRewrite, Authority, Scheme string
	Port                                  uint32
	// DerivePort: FROM_PROTOCOL_DEFAULT drops the port, FROM_REQUEST_PORT
	// keeps the request's.
	DerivePort networking.HTTPRedirect_RedirectPortSelection
	Code       int
}

// DirectResponse is an http route's fixed answer.
type DirectResponse struct {
	Status int
	Body   []byte
}

// Rewrite is what an http route changes before forwarding.
type Rewrite struct {
	URI       string
	regex     *regexp.Regexp
	regexSub  string
	Authority string
}

// Retry is an http route's retry policy.
type Retry struct {
	Attempts int           // retries after the first try; 0: none
	PerTry   time.Duration // 0: bounded by Timeout only
	Backoff  time.Duration // base interval, 25ms by default
	On       config.RetryOn
}

// Fault is an http route's fault injection: percentages are 0..100.
type Fault struct {
	Delay        time.Duration
	DelayPercent float64
	Abort        int // HTTP status; 0: none
	AbortPercent float64
}

// Mirror is a mirror destination and the share of requests it gets.
type Mirror struct {
	Destination Destination
	Percent     float64
}

// HeaderOps are header changes, applied as Remove, then Set, then Add.
type HeaderOps struct {
	Request, Response HeaderOp
}

// HeaderOp is one direction's changes; names are canonical.
type HeaderOp struct {
	Set    [][2]string
	Add    [][2]string
	Remove []string
}

// Empty reports whether op changes nothing.
func (op *HeaderOp) Empty() bool { return len(op.Set)+len(op.Add)+len(op.Remove) == 0 }

// Apply changes h (canonical keys, as net/http's Header).
func (op *HeaderOp) Apply(h map[string][]string) {
	for _, k := range op.Remove {
		delete(h, k)
	}
	for _, kv := range op.Set {
		h[kv[0]] = []string{kv[1]}
	}
	for _, kv := range op.Add {
		h[kv[0]] = append(h[kv[0]], kv[1])
	}
}

func compileVS(r config.Resource, vs *networking.VirtualService, cfg Config) (*VirtualService, error) {
	out := &VirtualService{Name: r.Key(), HTTP: len(vs.GetHttp()) > 0}
	for i, hr := range vs.GetHttp() {
		rt, keep, err := compileRoute(hr, r.Namespace, cfg)
		if err != nil {
			return nil, fmt.Errorf("http[%d]: %w", i, err)
		}
		if keep {
			out.Routes = append(out.Routes, rt)
		}
	}
	if err := compileStreams(out, vs, r.Namespace, cfg); err != nil {
		return nil, err
	}
	return out, nil
}

// compileRoute compiles one http route; keep is false when none of its
// matches can apply to this proxy.
func compileRoute(hr *networking.HTTPRoute, ns string, cfg Config) (*HTTPRoute, bool, error) {
	rt := &HTTPRoute{Name: hr.GetName(), matchAll: len(hr.GetMatch()) == 0}
	for i, m := range hr.GetMatch() {
		c, ok, err := compileMatch(m, ns, cfg)
		if err != nil {
			return nil, false, fmt.Errorf("match[%d]: %w", i, err)
		}
		if ok {
			rt.matches = append(rt.matches, c)
		}
	}
	if !rt.matchAll && len(rt.matches) == 0 {
		return nil, false, nil
	}
	dst := func(d *networking.Destination) Destination { return destination(d, ns, cfg) }
	for _, d := range hr.GetRoute() {
		if d.GetWeight() < 0 {
			return nil, false, fmt.Errorf("negative weight")
		}
		c := dst(d.GetDestination())
		c.Weight = uint32(d.GetWeight())
		c.Headers = compileHeaders(d.GetHeaders())
		rt.totalWeight += uint64(c.Weight)
		rt.Destinations = append(rt.Destinations, c)
	}
	if len(rt.Destinations) == 1 {
		// A single destination takes everything, whatever its weight.
		rt.Destinations[0].Weight, rt.totalWeight = 1, 1
	}
	if len(rt.Destinations) > 1 && rt.totalWeight == 0 {
		return nil, false, fmt.Errorf("every destination has weight 0")
	}
	if rd := hr.GetRedirect(); rd != nil {
		rt.Redirect = &Redirect{URI: rd.GetUri(), PrefixRewrite: rd.GetPrefixRewrite(), Authority: rd.GetAuthority(), Scheme: rd.GetScheme(), Code: int(rd.GetRedirectCode())}
		if rt.Redirect.Code == 0 {
			rt.Redirect.Code = 301
		}
		switch p := rd.GetRedirectPort().(type) {
		case *networking.HTTPRedirect_Port:
			rt.Redirect.Port = p.Port
		case *networking.HTTPRedirect_DerivePort:
			rt.Redirect.DerivePort = p.DerivePort
		}
	}
	if d := hr.GetDirectResponse(); d != nil {
		rt.Direct = &DirectResponse{Status: int(d.GetStatus())}
		if b := d.GetBody(); b != nil {
			if s, ok := b.GetSpecifier().(*networking.HTTPBody_String_); ok {
				rt.Direct.Body = []byte(s.String_)
			} else {
				rt.Direct.Body = b.GetBytes()
			}
		}
	}
	if len(rt.Destinations) == 0 && rt.Redirect == nil && rt.Direct == nil {
		return nil, false, fmt.Errorf("no route, redirect or directResponse")
	}
	if rw := hr.GetRewrite(); rw != nil {
		rt.Rewrite = &Rewrite{URI: rw.GetUri(), Authority: rw.GetAuthority()}
		if rr := rw.GetUriRegexRewrite(); rr != nil {
			re, err := regexp.Compile(rr.GetMatch())
			if err != nil {
				return nil, false, fmt.Errorf("rewrite.uriRegexRewrite: %w", err)
			}
			rt.Rewrite.regex, rt.Rewrite.regexSub = re, envoySubstitution(rr.GetRewrite())
		}
	}
	rt.Timeout = hr.GetTimeout().AsDuration()
	rt.Retry = Retry{Attempts: config.DefaultRetryAttempts, Backoff: 25 * time.Millisecond}
	on := ""
	if r := hr.GetRetries(); r != nil {
		rt.Retry.Attempts = int(r.GetAttempts())
		rt.Retry.PerTry = r.GetPerTryTimeout().AsDuration()
		if b := r.GetBackoff(); b != nil {
			rt.Retry.Backoff = b.AsDuration()
		}
		on = r.GetRetryOn()
	}
	var err error
	if rt.Retry.On, err = config.ParseRetryOn(on); err != nil {
		return nil, false, fmt.Errorf("retries.retryOn: %w", err)
	}
	if f := hr.GetFault(); f != nil {
		rt.Fault = &Fault{}
		if d := f.GetDelay(); d != nil {
			rt.Fault.Delay = d.GetFixedDelay().AsDuration()
			rt.Fault.DelayPercent = percent(float64(d.GetPercent()), d.GetPercentage())
		}
		if a := f.GetAbort(); a != nil {
			rt.Fault.Abort = int(a.GetHttpStatus())
			rt.Fault.AbortPercent = percent(0, a.GetPercentage())
		}
		// Istio: no time-out and no retries on a route that injects faults.
		rt.Timeout, rt.Retry.Attempts = 0, 0
	}
	if m := hr.GetMirror(); m != nil {
		p := 100.0
		if mp := hr.GetMirrorPercent(); mp != nil {
			p = float64(mp.GetValue())
		}
		p = percent(p, hr.GetMirrorPercentage())
		rt.Mirrors = append(rt.Mirrors, Mirror{Destination: dst(m), Percent: p})
	}
	for _, m := range hr.GetMirrors() {
		rt.Mirrors = append(rt.Mirrors, Mirror{Destination: dst(m.GetDestination()), Percent: percent(100, m.GetPercentage())})
	}
	rt.Headers = compileHeaders(hr.GetHeaders())
	return rt, true, nil
}

// destination compiles d, written in a VirtualService of namespace ns.
func destination(d *networking.Destination, ns string, cfg Config) Destination {
	return Destination{Host: Host(d.GetHost(), ns, cfg.DNSDomain), Port: d.GetPort().GetNumber(), Subset: d.GetSubset()}
}

// percent is p's value when set, else def; clamped to 0..100.
func percent(def float64, p *networking.Percent) float64 {
	v := def
	if p != nil {
		v = p.GetValue()
	}
	if !(v >= 0) { // NaN too
		return 0
	}
	return min(v, 100)
}

func compileHeaders(h *networking.Headers) HeaderOps {
	one := func(op *networking.Headers_HeaderOperations) HeaderOp {
		var out HeaderOp
		for _, k := range sortedKeys(op.GetSet()) {
			out.Set = append(out.Set, [2]string{canonicalHeader(k), op.GetSet()[k]})
		}
		for _, k := range sortedKeys(op.GetAdd()) {
			out.Add = append(out.Add, [2]string{canonicalHeader(k), op.GetAdd()[k]})
		}
		for _, k := range op.GetRemove() {
			out.Remove = append(out.Remove, canonicalHeader(k))
		}
		return out
	}
	return HeaderOps{Request: one(h.GetRequest()), Response: one(h.GetResponse())}
}

// envoySubstitution turns Envoy's \N capture references into Go's ${N}.
func envoySubstitution(s string) string {
	s = strings.ReplaceAll(s, "$", "$$")
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9' {
			b.WriteString("${" + string(s[i+1]) + "}")
			i++
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Pick returns the destination for the uniformly random n: destination i
// is chosen with probability weight_i / sum of weights. nil when the
// route has no destinations (redirect, direct response).
func (rt *HTTPRoute) Pick(n uint64) *Destination {
	return pick(rt.Destinations, rt.totalWeight, n)
}

// Hit reports whether an event of probability percent (0..100) happens
// for the uniformly random u in [0, 1).
func Hit(percent, u float64) bool { return u*100 < percent }

// Path returns the request path (with query) to forward, after
// rewrite.uri (replacing the matched prefix when the route matched by
// prefix, the whole path otherwise, the query kept) or uriRegexRewrite.
func (rw *Rewrite) Path(path, prefix string) string {
	if rw == nil {
		return path
	}
	p, q, hasQ := strings.Cut(path, "?")
	switch {
	case rw.regex != nil:
		p = rw.regex.ReplaceAllString(p, rw.regexSub)
	case rw.URI != "" && prefix != "":
		p = rw.URI + p[min(len(prefix), len(p)):]
	case rw.URI != "":
		p = rw.URI
	default:
		return path
	}
	if hasQ {
		return p + "?" + q
	}
	return p
}

// Location returns the Location of a redirect for a request with scheme,
// authority (Host, port included when sent) and path (with query),
// matched by prefix when prefix is set.
func (rd *Redirect) Location(scheme, authority, path, prefix string) string {
	if rd.Scheme != "" {
		scheme = rd.Scheme
	}
	host, port := splitHostPort(authority)
	if rd.Authority != "" {
		host, port = splitHostPort(rd.Authority)
	}
	switch {
	case rd.Port != 0:
		port = strconv.Itoa(int(rd.Port))
	case rd.DerivePort == networking.HTTPRedirect_FROM_PROTOCOL_DEFAULT && rd.Scheme != "":
		port = ""
	}
	if (scheme == "http" && port == "80") || (scheme == "https" && port == "443") {
		port = ""
	}
	p, q, hasQ := strings.Cut(path, "?")
	switch {
	case rd.URI != "":
		if strings.Contains(rd.URI, "?") {
			p, hasQ = rd.URI, false
		} else {
			p = rd.URI
		}
	case rd.PrefixRewrite != "" && prefix != "":
		p = rd.PrefixRewrite + p[min(len(prefix), len(p)):]
	}
	loc := scheme + "://" + host
	if port != "" {
		loc += ":" + port
	}
	loc += p
	if hasQ {
		loc += "?" + q
	}
	return loc
}

func splitHostPort(a string) (host, port string) {
	if i := strings.LastIndexByte(a, ':'); i >= 0 && !strings.Contains(a[i:], "]") {
		return a[:i], a[i+1:]
	}
	return a, ""
}

// Retriable reports whether an attempt that ended with status (0: no
// response), and, when it had none, a connect failure (connect) or a
// reset after the connection was made, may be retried under r.
func (r *Retry) Retriable(status int, connect bool, grpcStatus string) bool {
	on := r.On.Conditions
	if status == 0 {
		return on["5xx"] || on["gateway-error"] || on["reset"] || (connect && on["connect-failure"]) || on["refused-stream"] && connect
	}
	switch {
	case on["5xx"] && status >= 500:
		return true
	case on["gateway-error"] && (status == 502 || status == 503 || status == 504):
		return true
	case on["retriable-4xx"] && status == 409:
		return true
	case slices.Contains(r.On.Codes, status):
		return true
	}
	switch grpcStatus {
	case "1":
		return on["cancelled"]
	case "4":
		return on["deadline-exceeded"]
	case "8":
		return on["resource-exhausted"]
	case "13":
		return on["internal"]
	case "14":
		return on["unavailable"]
	}
	return false
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
