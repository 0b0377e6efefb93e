package proxy

import (
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/zmesh/zmesh/internal/tracing"
	"github.com/zmesh/zmesh/internal/tracing/otlp"
	"github.com/zmesh/zmesh/internal/xds"
)

// traceState is the tracing in force for each side of the proxy, resolved
// from the view's Telemetries once per push.
type traceState struct {
	client, server tracing.Policy
}

// compileTracing resolves the view's Telemetry tracing for this workload.
// Nothing in it can make a push fail: a provider zmesh cannot report to
// leaves spans unreported (logged), and requests are served as ever.
func (p *Proxy) compileTracing(st *state, v *xds.View) {
	m := tracing.Mesh{
		RootNamespace:    v.Mesh.RootNamespace,
		Providers:        v.Mesh.ExtensionProviders,
		DefaultProviders: v.Mesh.DefaultTracingProviders,
		Sampling:         v.Mesh.TracingSampling,
	}
	w := tracing.Workload{Namespace: p.cfg.Workload.Namespace, Labels: p.cfg.Workload.Labels}
	var notes []string
	st.trace.client, st.trace.server, notes = tracing.Resolve(m, v.Telemetries, w)
	for _, n := range notes {
		p.log.Warn("tracing: "+n, "version", v.Version)
	}
}

// newSpans is the proxy's span exporter: spans name the workload as
// Istio's canonical service does (its app label, else its name) with its
// namespace.
func newSpans(p *Proxy) (*otlp.Exporter, error) {
	svc := p.cfg.Workload.Labels["app"]
	if svc == "" {
		svc = p.cfg.Workload.Name
	}
	return otlp.New(otlp.Config{
		Service:    svc + "." + p.cfg.Workload.Namespace,
		Attributes: map[string]string{"k8s.namespace.name": p.cfg.Workload.Namespace, "zmesh.workload": p.cfg.Workload.Name},
		Metrics:    p.registry,
		Logger:     p.log,
	})
}

// startTrace does, for a request arriving on one side of the proxy, what
// Envoy's HTTP connection manager does before routing: it gives the
// request an x-request-id if it has none, and, when a tracer is
// configured for the side, continues the trace of the request's W3C or
// B3 headers (or starts one), decides sampling (an incoming decision
// wins), and rewrites the headers so that the next hop sees this proxy's
// span as parent. It returns the span to end once the response is known,
// nil when nothing is reported. Without a tracer the trace headers pass
// untouched and nothing is allocated but the request ID.
func (p *Proxy) startTrace(h http.Header, side otlp.Kind, start time.Time) *otlp.Span {
	if _, ok := h[tracing.HeaderRequestID]; !ok {
		h[tracing.HeaderRequestID] = []string{p.ids.RequestID()}
	}
	st := p.state.Load()
	if st == nil {
		return nil
	}
	pol := &st.trace.client
	if side == otlp.Server {
		pol = &st.trace.server
	}
	if pol.Provider == "" {
		return nil
	}
	parent := extractTrace(h)
	sampled := tracing.Sample(parent.Decision, parent.Debug, pol.Percent, p.ids.Uint64())
	var sp *otlp.Span
	var traceID tracing.TraceID
	var spanID tracing.SpanID
	if sampled && pol.Reports() {
		name := "egress"
		if side == otlp.Server {
			name = "ingress"
		}
		sp = p.spans.Start(parent, side, name, pol.Collector, start)
		traceID, spanID = sp.IDs()
	} else {
		traceID, spanID = parent.TraceID, p.ids.SpanID()
		if !traceID.IsValid() {
			traceID = p.ids.TraceID()
		}
	}
	injectTrace(h, traceID, spanID, parent, sampled)
	return sp
}

// extractTrace reads the request's trace context: traceparent first (what
// Envoy's OpenTelemetry tracer reads), then b3, then the x-b3-* headers.
// A malformed header counts as absent: the request starts a new trace.
func extractTrace(h http.Header) tracing.SpanContext {
	if v := h[tracing.HeaderTraceparent]; len(v) == 1 {
		if sc, err := tracing.ParseTraceparent(v[0]); err == nil {
			return sc
		}
	}
	if v := h[tracing.HeaderB3]; len(v) == 1 {
		if sc, err := tracing.ParseB3Single(v[0]); err == nil {
			return sc
		}
	}
	if len(h[tracing.HeaderB3TraceID]) > 0 || len(h[tracing.HeaderB3Sampled]) > 0 || len(h[tracing.HeaderB3Flags]) > 0 {
		sc, err := tracing.ParseB3(tracing.B3{
			TraceID:      h.Get(tracing.HeaderB3TraceID),
			SpanID:       h.Get(tracing.HeaderB3SpanID),
			ParentSpanID: h.Get(tracing.HeaderB3ParentSpanID),
			Sampled:      h.Get(tracing.HeaderB3Sampled),
			Flags:        h.Get(tracing.HeaderB3Flags),
		})
		if err == nil {
			return sc
		}
	}
	return tracing.SpanContext{}
}

// injectTrace writes span spanID of trace traceID as the parent for the
// next hop: always as traceparent (tracestate passes as it came), and in
// each B3 form the request carried, so that apps that propagate only B3
// keep the chain.
func injectTrace(h http.Header, traceID tracing.TraceID, spanID tracing.SpanID, parent tracing.SpanContext, sampled bool) {
	h[tracing.HeaderTraceparent] = []string{tracing.FormatTraceparent(traceID, spanID, sampled)}
	var parentID tracing.SpanID
	if parent.TraceID == traceID {
		parentID = parent.SpanID
	}
	if _, ok := h[tracing.HeaderB3]; ok || parent.Format == tracing.B3Single {
		h[tracing.HeaderB3] = []string{tracing.FormatB3Single(traceID, spanID, parentID, sampled, parent.Debug)}
	}
	if _, ok := h[tracing.HeaderB3TraceID]; ok || parent.Format == tracing.B3Multi {
		b := tracing.FormatB3(traceID, spanID, parentID, sampled, parent.Debug)
		for k, v := range map[string]string{
			tracing.HeaderB3TraceID: b.TraceID, tracing.HeaderB3SpanID: b.SpanID, tracing.HeaderB3ParentSpanID: b.ParentSpanID,
			tracing.HeaderB3Sampled: b.Sampled, tracing.HeaderB3Flags: b.Flags,
		} {
			if v == "" {
				delete(h, k)
			} else {
				h[k] = []string{v}
			}
		}
	}
}

// endTrace records the request's outcome on sp and ends it: named as
// Istio names a sidecar's spans (SERVICE:PORT/*), with Envoy's tags.
func (p *Proxy) endTrace(sp *otlp.Span, r *http.Request, rec *recorder, cluster, service, port, peerID string) {
	if sp == nil {
		return
	}
	sp.End(&otlp.Request{
		Name:            service + ":" + port + "/*",
		Method:          r.Method,
		URL:             "http://" + r.Host + r.URL.RequestURI(),
		Protocol:        r.Proto,
		Status:          rec.status(),
		RequestID:       r.Header.Get(tracing.HeaderRequestID),
		UpstreamCluster: cluster,
		PeerIdentity:    peerID,
		Flags:           rec.flags,
		Namespace:       p.cfg.Workload.Namespace,
		CanonicalSvc:    p.cfg.Workload.Name,
	}, time.Now())
}

// portOf is the port of a Host header, or def.
func portOf(hostport, def string) string {
	if _, port, err := net.SplitHostPort(hostport); err == nil && port != "" {
		return port
	}
	return def
}

// endClientTrace ends the client proxy's span of r.
func (o *outbound) endClientTrace(sp *otlp.Span, r *http.Request, rec *recorder, service, peerID string) {
	if sp == nil {
		return
	}
	port := portOf(r.Host, "80")
	o.p.endTrace(sp, r, rec, "outbound|"+port+"||"+service, service, port, peerID)
}

// endServerTrace ends the server proxy's span of r.
func (in *inbound) endServerTrace(sp *otlp.Span, r *http.Request, rec *recorder, peerID string) {
	if sp == nil {
		return
	}
	port := strconv.Itoa(int(in.p.appPort))
	in.p.endTrace(sp, r, rec, "inbound|"+port+"||", in.serviceFor(r.Host), portOf(r.Host, "80"), peerID)
}

// addedOnMeshHop is how many of the values of header k a client proxy may
// have added itself (x-request-id when the app sent none, traceparent when
// tracing): 1 for those headers when they have exactly one value, else 0.
// An app's request with the most headers allowed then still passes the
// server proxy's count; a peer gains at most two fields by it.
func addedOnMeshHop(k string, vs []string) int {
	if len(vs) == 1 && (k == tracing.HeaderRequestID || k == tracing.HeaderTraceparent) {
		return 1
	}
	return 0
}
