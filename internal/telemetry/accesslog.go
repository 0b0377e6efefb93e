package telemetry

import (
	"context"
	"log/slog"
	"time"
)

// AccessEntry is one access-log line: one HTTP request as the proxy handled
// it.
type AccessEntry struct {
	Direction string // "inbound" or "outbound"
	Method    string
	Authority string
	Path      string
	Protocol  string // e.g. HTTP/1.1, HTTP/2.0
	Code      int
	Flags     string // Envoy-style response flags, "-" when none
	Duration  time.Duration
	Peer      string // the peer's SPIFFE ID (inbound: the caller; outbound: the server), empty when plaintext
	Upstream  string // address the request was sent to, empty when not forwarded
	Policy    string // deciding AuthorizationPolicy on deny
	Reason    string // why it was denied or failed
	BytesIn   int64  // request body bytes received
	BytesOut  int64  // response body bytes sent
}

// AccessLog writes one structured line per request. A nil *AccessLog, or
// one whose logger has Info disabled, logs nothing and costs nothing.
type AccessLog struct {
	l *slog.Logger
}

// NewAccessLog returns an access log writing to l at Info level under the
// message "access".
func NewAccessLog(l *slog.Logger) *AccessLog {
	if l == nil {
		return nil
	}
	return &AccessLog{l: l}
}

// Log writes e.
func (a *AccessLog) Log(ctx context.Context, e *AccessEntry) {
	if a == nil || !a.l.Enabled(ctx, slog.LevelInfo) {
		return
	}
	attrs := [...]slog.Attr{
		slog.String("direction", e.Direction),
		slog.String("method", e.Method),
		slog.String("authority", e.Authority),
		slog.String("path", e.Path),
		slog.String("protocol", e.Protocol),
		slog.Int("status", e.Code),
		slog.String("flags", orDefault(e.Flags, "-")),
		slog.Float64("duration_ms", float64(e.Duration)/float64(time.Millisecond)),
		slog.String("peer", e.Peer),
		slog.String("upstream", e.Upstream),
		slog.Int64("bytes_in", e.BytesIn),
		slog.Int64("bytes_out", e.BytesOut),
		slog.String("policy", e.Policy),
		slog.String("reason", e.Reason),
	}
	n := len(attrs)
	if e.Policy == "" && e.Reason == "" {
		n -= 2
	}
	a.l.LogAttrs(ctx, slog.LevelInfo, "access", attrs[:n]...)
}
