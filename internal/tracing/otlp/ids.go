package otlp

import (
	"context"
	"slices"

	"go.opentelemetry.io/otel/trace"

	"github.com/zmesh/zmesh/internal/tracing"
)

// idGenerator makes the SDK's IDs with tracing.IDs; a trace ID chosen
// before the span (a B3 decision without IDs) comes through the context.
type idGenerator struct{ ids tracing.IDs }

type traceIDKey struct{}

func withTraceID(ctx context.Context, t tracing.TraceID) context.Context {
	return context.WithValue(ctx, traceIDKey{}, t)
}

func (g idGenerator) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	t, ok := ctx.Value(traceIDKey{}).(tracing.TraceID)
	if !ok {
		t = g.ids.TraceID()
	}
	return trace.TraceID(t), trace.SpanID(g.ids.SpanID())
}

func (g idGenerator) NewSpanID(context.Context, trace.TraceID) trace.SpanID {
	return trace.SpanID(g.ids.SpanID())
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
