package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"time"

	vroute "github.com/zmesh/zmesh/internal/route"
	"github.com/zmesh/zmesh/internal/telemetry"
	"github.com/zmesh/zmesh/internal/xds"
)

// Envoy's response flags for what VirtualServices add.
const (
	flagFaultAbort      = "FI"
	flagFaultDelay      = "DI"
	flagUpstreamTimeout = "UT"
	flagNoCluster       = "NC"
)

const (
	// maxReplayBody is the largest request body kept in memory so that a
	// request can be retried or mirrored. A larger (or streamed) body is
	// sent once and not mirrored.
	maxReplayBody = 64 << 10
	// maxMirrorsInFlight bounds the mirrored copies in flight per proxy.
	// A copy that finds them all busy is dropped: mirroring never queues
	// work behind the caller's request.
	maxMirrorsInFlight = 64
	// mirrorTimeout bounds one mirrored copy.
	mirrorTimeout = 10 * time.Second
)

// compileVirtualServices compiles v's VirtualServices into st, for the
// outbound side of this workload. A destination's subset is resolved
// when a request takes it, by the route's DestinationRule policies
// (route.pickAt): the one place endpoints are chosen.
func (p *Proxy) compileVirtualServices(st *state, v *xds.View) error {
	t, err := vroute.Compile(v.VirtualServices, vroute.Config{
		Namespace: p.cfg.Workload.Namespace,
		Labels:    p.cfg.Workload.Labels,
		DNSDomain: st.dnsDomain,
	})
	if err != nil {
		return err
	}
	st.vroutes = t
	return nil
}

// virtualServiceFor returns the VirtualService that governs a request to
// host, given the service it names (nil: none): looked up by the
// service's FQDN, else by the host itself (a short name completed in the
// proxy's namespace, as Istio reads a VirtualService's hosts).
func (st *state) virtualServiceFor(svc *route, host, ns string) *vroute.VirtualService {
	if st == nil || st.vroutes.Len() == 0 {
		return nil
	}
	if svc != nil {
		if vs := st.vroutes.Lookup(svc.hostname); vs != nil {
			return vs
		}
	}
	if host == "" {
		return nil
	}
	return st.vroutes.Lookup(vroute.Host(stripPort(host), ns, st.dnsDomain))
}

// random returns a uniformly random number for a routing decision.
func (o *outbound) random() uint64 {
	if o.rnd != nil {
		return o.rnd()
	}
	return rand.Uint64()
}

// uniform returns a uniformly random number in [0, 1).
func (o *outbound) uniform() float64 {
	return float64(o.random()>>11) / (1 << 53)
}

// virtual routes r, addressed to the service port port, as the
// VirtualService vs says. It returns what route returns.
func (o *outbound) virtual(rec *recorder, r *http.Request, labels *telemetry.RequestLabels, st *state, vs *vroute.VirtualService, port uint32) (upstream, peerID string, cb *countingBody) {
	req := vroute.Request{
		Method:    r.Method,
		Scheme:    "http",
		Authority: r.Host,
		Path:      r.URL.RequestURI(),
		Port:      port,
		Header:    r.Header,
	}
	hr, prefix := vs.Match(&req)
	if hr == nil {
		// Istio: a host with a VirtualService and no matching route gets
		// 404 from the route table.
		labels.Service, labels.ServiceName = stripPort(r.Host), stripPort(r.Host)
		rec.fail(flagNoRoute, nil)
		rec.reason = "no route of VirtualService " + vs.Name + " matches"
		writeText(rec, http.StatusNotFound, "")
		return "", "", nil
	}
	if o.answered(rec, r, hr, vs.Name, req.Path, prefix) {
		return "", "", nil
	}
	dst := hr.Pick(o.random())
	svc := st.routes.lookup(dst.Host)
	if svc == nil {
		labels.Service, labels.ServiceName = dst.Host, dst.Host
		rec.fail(flagNoCluster, nil)
		rec.reason = "VirtualService " + vs.Name + " routes to " + dst.Host + ", which is not a mesh service"
		writeText(rec, http.StatusServiceUnavailable, bodyNoUpstream)
		return "", "", nil
	}
	labels.Service, labels.ServiceName, labels.ServiceNamespace = svc.hostname, svc.name, svc.namespace

	// The request as the destination gets it.
	if hr.Rewrite != nil {
		if p := hr.Rewrite.Path(req.Path, prefix); p != req.Path {
			if u, err := r.URL.Parse(p); err == nil {
				r.URL.Path, r.URL.RawPath, r.URL.RawQuery = u.Path, u.RawPath, u.RawQuery
			}
		}
		if a := hr.Rewrite.Authority; a != "" {
			r.Host = a
		}
	}
	hr.Headers.Request.Apply(r.Header)
	dst.Headers.Request.Apply(r.Header)

	body, replay := replayableBody(r)
	cb = countBody(r)
	for i := range hr.Mirrors {
		m := &hr.Mirrors[i]
		if vroute.Hit(m.Percent, o.uniform()) {
			o.mirror(st, r, port, body, replay, &m.Destination)
		}
	}
	if dst.Port != 0 {
		port = dst.Port
	}
	upstream, peerID = o.forwardVirtual(rec, r, labels, forwarding{route: hr, dst: dst, svc: svc, port: port, body: body, replay: replay})
	return upstream, peerID, cb
}

// answered applies what of hr answers without a destination: a fault
// (delay, then abort), a redirect or a direct response. It reports
// whether the caller has been answered.
func (o *outbound) answered(rec *recorder, r *http.Request, hr *vroute.HTTPRoute, vs, path, prefix string) bool {
	if f := hr.Fault; f != nil {
		if f.Delay > 0 && vroute.Hit(f.DelayPercent, o.uniform()) {
			t := time.NewTimer(f.Delay)
			select {
			case <-t.C:
				rec.flags = flagFaultDelay
			case <-r.Context().Done():
				t.Stop()
				rec.fail(flagDownstreamReset, r.Context().Err())
				return true
			}
		}
		if f.Abort != 0 && vroute.Hit(f.AbortPercent, o.uniform()) {
			rec.fail(flagFaultAbort, nil)
			rec.reason = "fault injected by VirtualService " + vs
			writeText(rec, f.Abort, "fault filter abort")
			return true
		}
	}
	switch {
	case hr.Redirect != nil:
		rec.Header().Set("Location", hr.Redirect.Location("http", r.Host, path, prefix))
		rec.WriteHeader(hr.Redirect.Code)
		return true
	case hr.Direct != nil:
		if len(hr.Direct.Body) > 0 {
			rec.Header().Set("Content-Type", "text/plain")
		}
		rec.WriteHeader(hr.Direct.Status)
		rec.Write(hr.Direct.Body)
		return true
	}
	return false
}

// forwarding is one request on its way to a VirtualService destination.
type forwarding struct {
	route *vroute.HTTPRoute
	dst   *vroute.Destination
	svc   *route
	port  uint32 // the service port: the destination's, else the request's
	// body is the request body when replay (it may be sent again);
	// otherwise the request is tried once.
	body   []byte
	replay bool
}

// forwardVirtual sends r to an endpoint of f.svc (in f.dst's subset, as
// its DestinationRule balances, limits and secures it), trying again as
// the route's retry policy allows, within its time-out, and answers the
// caller with the first response not retried.
func (o *outbound) forwardVirtual(rec *recorder, r *http.Request, labels *telemetry.RequestLabels, f forwarding) (upstream, peerID string) {
	hr := f.route
	attempts := 1 + hr.Retry.Attempts
	if !f.replay {
		attempts = 1 // the body can be read only once
	}
	ctx := r.Context()
	if hr.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, hr.Timeout)
		defer cancel()
	}
	for try := 0; try < attempts; try++ {
		if try > 0 {
			o.backoff(ctx, hr.Retry.Backoff, try)
		}
		ep, pool, setCookie := f.svc.pickFor(f.dst.Subset, f.port, r)
		if ep == nil || ep.refuse != "" {
			rec.fail(flagNoHealthyUp, nil)
			switch {
			case ep != nil:
				rec.reason = ep.refuse
			case f.dst.Subset != "":
				rec.reason = "service " + f.svc.hostname + " has no endpoints in subset " + f.dst.Subset
			default:
				rec.reason = "service " + f.svc.hostname + " has no endpoints"
			}
			writeText(rec, http.StatusServiceUnavailable, bodyNoUpstream)
			return "", ""
		}
		if !pool.acquire(ctx) {
			rec.fail(flagOverflow, nil)
			rec.reason = "connection pool of " + f.svc.hostname + " is full (DestinationRule connectionPool)"
			writeText(rec, http.StatusServiceUnavailable, bodyOverflow)
			return "", ""
		}
		a := &attempt{rec: rec, h: http.Header{}, last: try == attempts-1, retry: &hr.Retry, resp: [2]*vroute.HeaderOp{&hr.Headers.Response, &f.dst.Headers.Response}}
		if setCookie != "" {
			a.h.Add("Set-Cookie", setCookie)
		}
		tctx, cancel := ctx, context.CancelFunc(func() {})
		if hr.Retry.PerTry > 0 {
			tctx, cancel = context.WithTimeout(ctx, hr.Retry.PerTry)
		}
		ar := r.Clone(tctx)
		if len(f.body) > 0 {
			ar.Body = io.NopCloser(bytes.NewReader(f.body))
		}
		ar, upstream, peerID = o.toEndpoint(ar.WithContext(pool.forRequest(ar.Context())), ep, labels)
		ep.active.Add(1)
		o.vrp.ServeHTTP(a, ar)
		ep.active.Add(-1)
		pool.release()
		cancel()
		a.finish(r.Context(), ctx)
		if a.err == nil {
			ep.health.report(a.code)
		} else if r.Context().Err() == nil {
			ep.health.report(http.StatusServiceUnavailable)
		}
		if !a.swallowed {
			break
		}
	}
	if labels.Security == telemetry.SecurityMutualTLS && rec.flags == flagUpstreamFailure {
		// As in route: no claim of mutual TLS with a server that may
		// never have proved its identity.
		labels.Security, labels.Destination.Principal = telemetry.Unknown, ""
	}
	return upstream, peerID
}

// backoff waits before retry number try, as Envoy does: uniformly random
// up to base * 2^(try-1), at most ten times base; or until ctx ends.
func (o *outbound) backoff(ctx context.Context, base time.Duration, try int) {
	limit := min(base<<(try-1), 10*base)
	t := time.NewTimer(time.Duration(o.random() % uint64(limit+1)))
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// toEndpoint addresses r to ep: mTLS to an endpoint with a proxy
// (naming the source workload), TLS origination where a DestinationRule
// asks for it (RoundTrip finds the originator in the context of the
// request returned), plaintext otherwise. It fills the destination labels.
func (o *outbound) toEndpoint(r *http.Request, ep *endpoint, labels *telemetry.RequestLabels) (_ *http.Request, upstream, peerID string) {
	labels.Destination = telemetry.Peer{Workload: ep.workload, Namespace: ep.namespace, Principal: ep.uri}
	labels.Security = telemetry.SecurityNone
	r.URL.Scheme = "http"
	delete(r.Header, headerSourceWorkload)
	switch {
	case ep.hasProxy:
		r.URL.Scheme = "https"
		r.Header[headerSourceWorkload] = []string{o.self.Workload}
		labels.Security = telemetry.SecurityMutualTLS
		peerID = ep.uri
	case ep.origin != nil:
		r.URL.Scheme = "https"
		r = r.WithContext(context.WithValue(r.Context(), originKey{}, ep.origin))
	}
	r.URL.Host = ep.addr
	return r, ep.addr, peerID
}

// replayableBody reads r's body into memory when it is small enough to
// send again (retries, mirrors); ok is false for a body that is not.
func replayableBody(r *http.Request) (body []byte, ok bool) {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return nil, true
	}
	if r.ContentLength < 0 || r.ContentLength > maxReplayBody {
		return nil, false
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, r.ContentLength))
	if err != nil || int64(len(b)) != r.ContentLength {
		// Give the transport what was read, and the error with it.
		r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(b), errReader{err: errors.Join(err, io.ErrUnexpectedEOF)}))
		return nil, false
	}
	r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(b))
	return b, true
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
