// Package otlp reports a proxy's spans to OpenTelemetry collectors over
// OTLP/gRPC, with the OpenTelemetry Go SDK's span model and exporter. The
// request path hands finished spans to a bounded queue and never waits:
// when the queue is full (a slow or absent collector) spans are dropped
// and counted. Run, owned by the proxy, batches the queue and exports.
package otlp

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/zmesh/zmesh/internal/tracing"
)

// Defaults of Config.
const (
	DefaultQueueSize = 2048
	DefaultBatchSize = 512
	DefaultInterval  = time.Second
	DefaultTimeout   = 5 * time.Second
	// idleClient is how long a collector's connection is kept with no
	// span for it (its provider gone from the config, say).
	idleClient = 5 * time.Minute
)

// Config configures an Exporter.
type Config struct {
	// Service is the spans' service.name, Istio's canonical service and
	// namespace, e.g. "web.foo".
	Service string
	// Attributes are further resource attributes (k8s.namespace.name, ...).
	Attributes map[string]string
	// QueueSize bounds the spans waiting for export; BatchSize is the most
	// sent in one request; Interval is the longest a span waits for its
	// batch to fill; Timeout bounds one export, retries included.
	QueueSize, BatchSize int
	Interval, Timeout    time.Duration
	// IDs makes span and trace IDs; zero: crypto/rand.
	IDs tracing.IDs
	// Metrics, if set, gets zmesh_tracing_spans_exported_total and
	// zmesh_tracing_spans_dropped_total{reason}.
	Metrics prometheus.Registerer
	// Logger receives export failures; nil discards.
	Logger *slog.Logger
}

// Exporter starts spans and reports them. Start and End are safe for
// concurrent use and never block; Run does the exporting.
type Exporter struct {
	cfg    Config
	log    *slog.Logger
	tp     *sdktrace.TracerProvider
	tracer trace.Tracer
	queue  chan queued

	exported                     prometheus.Counter
	droppedFull, droppedFailures prometheus.Counter
}

// queued is a finished span and where it goes.
type queued struct {
	span      sdktrace.ReadOnlySpan
	collector string
}

// New returns an exporter; nothing is sent until Run.
func New(cfg Config) (*Exporter, error) {
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	attrs := []attribute.KeyValue{attribute.String("service.name", cfg.Service)}
	for _, k := range sortedKeys(cfg.Attributes) {
		attrs = append(attrs, attribute.String(k, cfg.Attributes[k]))
	}
	e := &Exporter{
		cfg:   cfg,
		log:   log,
		queue: make(chan queued, cfg.QueueSize),
		tp: sdktrace.NewTracerProvider(
			// The proxy decides sampling (tracing.Sample) before it
			// starts a span at all: every span started is recorded.
			sdktrace.WithSampler(sdktrace.AlwaysSample()),
			sdktrace.WithIDGenerator(idGenerator{cfg.IDs}),
			sdktrace.WithResource(resource.NewWithAttributes("", attrs...)),
		),
		exported: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zmesh_tracing_spans_exported_total",
			Help: "Spans the proxy's collector accepted.",
		}),
	}
	dropped := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "zmesh_tracing_spans_dropped_total",
		Help: "Spans not reported: the export queue was full (queue_full), or the collector refused or did not answer (export_failed).",
	}, []string{"reason"})
	e.droppedFull = dropped.WithLabelValues("queue_full")
	e.droppedFailures = dropped.WithLabelValues("export_failed")
	e.tracer = e.tp.Tracer("zmesh")
	if cfg.Metrics != nil {
		for _, c := range []prometheus.Collector{e.exported, dropped} {
			if err := cfg.Metrics.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return e, nil
}

// Kind says which proxy a span is from.
type Kind uint8

// Kinds of span: the client proxy's (outbound) and the server proxy's
// (inbound), OpenTelemetry's CLIENT and SERVER.
const (
	Client Kind = iota
	Server
)

func (k Kind) String() string {
	if k == Server {
		return "server"
	}
	return "client"
}

// Span is one proxy's span of a request. Its zero value, and a nil *Span,
// do nothing.
type Span struct {
	e         *Exporter
	s         trace.Span
	collector string
}

// Start starts the span of kind k, named name, at start, as a child of
// parent (when valid; else the first span of a new trace), reported to
// collector on End.
func (e *Exporter) Start(parent tracing.SpanContext, k Kind, name, collector string, start time.Time) *Span {
	ctx := context.Background()
	if parent.IsValid() {
		ctx = trace.ContextWithRemoteSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{
			TraceID:    trace.TraceID(parent.TraceID),
			SpanID:     trace.SpanID(parent.SpanID),
			TraceFlags: trace.FlagsSampled,
			Remote:     true,
		}))
	} else if parent.TraceID.IsValid() {
		ctx = withTraceID(ctx, parent.TraceID)
	}
	kind := trace.SpanKindClient
	if k == Server {
		kind = trace.SpanKindServer
	}
	_, s := e.tracer.Start(ctx, name, trace.WithSpanKind(kind), trace.WithTimestamp(start),
		trace.WithAttributes(attribute.String("zmesh.proxy", k.String()), attribute.String("component", "proxy")))
	return &Span{e: e, s: s, collector: collector}
}

// IDs returns the span's trace and span IDs, for the headers sent on.
func (sp *Span) IDs() (tracing.TraceID, tracing.SpanID) {
	sc := sp.s.SpanContext()
	return tracing.TraceID(sc.TraceID()), tracing.SpanID(sc.SpanID())
}

// Request is what a span records of its request, with the tags Envoy
// puts on its spans.
type Request struct {
	Name            string // replaces the name given to Start when set
	Method, URL     string
	Protocol        string // HTTP/1.1, HTTP/2.0
	Status          int    // 0: no response
	RequestID       string // x-request-id
	UpstreamCluster string // Envoy's cluster name, e.g. outbound|8080||api.foo.svc.cluster.local
	PeerIdentity    string // the SPIFFE ID of the other proxy (mTLS), or ""
	Flags           string // Envoy's response flags
	Namespace       string // istio.namespace
	CanonicalSvc    string // istio.canonical_service
}

// End records r and ends the span at end, then queues it for export; when
// the queue is full the span is dropped and counted. It never blocks.
func (sp *Span) End(r *Request, end time.Time) {
	if sp == nil || sp.s == nil {
		return
	}
	s := sp.s
	if r.Name != "" {
		s.SetName(r.Name)
	}
	attrs := make([]attribute.KeyValue, 0, 12)
	attrs = append(attrs,
		attribute.String("http.method", r.Method),
		attribute.String("http.url", r.URL),
		attribute.String("http.protocol", r.Protocol),
		attribute.Int("http.status_code", r.Status),
		attribute.String("guid:x-request-id", r.RequestID),
		attribute.String("upstream_cluster", r.UpstreamCluster),
		attribute.String("response_flags", orDash(r.Flags)),
	)
	if r.PeerIdentity != "" {
		attrs = append(attrs, attribute.String("zmesh.peer.identity", r.PeerIdentity))
	}
	if r.Namespace != "" {
		attrs = append(attrs, attribute.String("istio.namespace", r.Namespace))
	}
	if r.CanonicalSvc != "" {
		attrs = append(attrs, attribute.String("istio.canonical_service", r.CanonicalSvc))
	}
	if r.Status == 0 || r.Status >= 500 {
		attrs = append(attrs, attribute.Bool("error", true))
		s.SetStatus(codes.Error, "")
	}
	s.SetAttributes(attrs...)
	s.End(trace.WithTimestamp(end))
	ro, ok := s.(sdktrace.ReadOnlySpan)
	if !ok || sp.collector == "" {
		return
	}
	select {
	case sp.e.queue <- queued{span: ro, collector: sp.collector}:
	default:
		sp.e.droppedFull.Inc()
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Run exports queued spans until ctx is done, in batches of at most
// BatchSize, none waiting longer than Interval; then it exports what is still queued
// (within Timeout) and closes its collector connections. It returns nil.
func (e *Exporter) Run(ctx context.Context) error {
	clients := map[string]*client{}
	defer func() {
		for _, c := range clients {
			sctx, cancel := context.WithTimeout(context.Background(), time.Second)
			c.exp.Shutdown(sctx)
			cancel()
		}
	}()
	batch := make([]queued, 0, e.cfg.BatchSize)
	// The timer runs only while a batch waits: an idle proxy never wakes.
	timer := time.NewTimer(e.cfg.Interval)
	timer.Stop()
	for {
		select {
		case <-ctx.Done():
			timer.Stop()
		drain:
			for len(batch) < cap(batch) {
				select {
				case q := <-e.queue:
					batch = append(batch, q)
				default:
					break drain
				}
			}
			// What was queued goes out, within a second: the proxy is
			// stopping, and a collector that is away must not hold it.
			e.flush(context.Background(), clients, batch, time.Second)
			return nil
		case q := <-e.queue:
			batch = append(batch, q)
			if len(batch) == 1 {
				timer.Reset(e.cfg.Interval)
			}
			if len(batch) < e.cfg.BatchSize {
				continue
			}
			timer.Stop()
		case <-timer.C:
		}
		e.flush(ctx, clients, batch, e.cfg.Timeout)
		clear(batch)
		batch = batch[:0]
		e.closeIdle(clients)
	}
}

// client is the exporter of one collector.
type client struct {
	exp      *otlptrace.Exporter
	lastUsed time.Time
	failing  bool
}

// flush exports batch, grouped by collector.
func (e *Exporter) flush(ctx context.Context, clients map[string]*client, batch []queued, timeout time.Duration) {
	if len(batch) == 0 {
		return
	}
	by := map[string][]sdktrace.ReadOnlySpan{}
	for _, q := range batch {
		by[q.collector] = append(by[q.collector], q.span)
	}
	for addr, spans := range by {
		c, err := e.client(ctx, clients, addr)
		if err == nil {
			ectx, cancel := context.WithTimeout(ctx, timeout)
			err = c.exp.ExportSpans(ectx, spans)
			cancel()
			c.lastUsed = time.Now()
		}
		if err != nil {
			e.droppedFailures.Add(float64(len(spans)))
			if c == nil || !c.failing {
				e.log.Warn("tracing: spans not exported; dropping them", "collector", addr, "spans", len(spans), "err", err)
			}
			if c != nil {
				c.failing = true
			}
			continue
		}
		if c.failing {
			e.log.Info("tracing: collector accepts spans again", "collector", addr)
			c.failing = false
		}
		e.exported.Add(float64(len(spans)))
	}
}

func (e *Exporter) client(ctx context.Context, clients map[string]*client, addr string) (*client, error) {
	if c := clients[addr]; c != nil {
		return c, nil
	}
	exp, err := otlptracegrpc.New(ctx,
		otlptracegrpc.WithEndpoint(addr),
		otlptracegrpc.WithInsecure(),
		otlptracegrpc.WithTimeout(e.cfg.Timeout),
		otlptracegrpc.WithRetry(otlptracegrpc.RetryConfig{
			Enabled:         true,
			InitialInterval: 100 * time.Millisecond,
			MaxInterval:     time.Second,
			MaxElapsedTime:  e.cfg.Timeout,
		}),
	)
	if err != nil {
		return nil, errors.Join(errors.New("connect"), err)
	}
	c := &client{exp: exp, lastUsed: time.Now()}
	clients[addr] = c
	return c, nil
}

// closeIdle closes the connections of collectors no span went to lately.
func (e *Exporter) closeIdle(clients map[string]*client) {
	for addr, c := range clients {
		if time.Since(c.lastUsed) > idleClient {
			sctx, cancel := context.WithTimeout(context.Background(), time.Second)
			c.exp.Shutdown(sctx)
			cancel()
			delete(clients, addr)
		}
	}
}
