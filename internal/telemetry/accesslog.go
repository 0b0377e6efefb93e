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

	// Audit is true when an AUDIT policy matched the request;
	// AuditPolicy names it (Istio marks such requests for audit logging).
	Audit       bool
	AuditPolicy string
	// DryRunResult is "allow" or "deny": what the decision would have
	// been with the istio.io/dry-run policies enforced; "" when the
	// workload has none. DryRunPolicy is the policy that would have
	// decided ("" for a default).
	DryRunResult string
	DryRunPolicy string

	// Source and Destination are set by a gateway, whose log must say
	// who left (or came in) for where: the caller's SPIFFE ID, else its
	// address, and the destination host routed to.
	Source      string
	Destination string
}

// AccessLog writes one structured line per request. A nil *AccessLog, or
// one whose logger has Info disabled, logs nothing and costs nothing.
type AccessLog struct {
	l      *slog.Logger
	errors bool // only requests that failed, were denied, audited or dry-run
}

// ErrorsOnly returns an access log that writes only the requests worth an
// operator's attention: denied or failed ones (status 400 and above, or a
// response flag), and those marked for audit or with a dry-run result. A
// line per successful request costs more CPU than the rest of the proxy's
// request path, so, like Istio's default profile, zmesh keeps it opt-in.
func (a *AccessLog) ErrorsOnly() *AccessLog {
	if a == nil {
		return nil
	}
	return &AccessLog{l: a.l, errors: true}
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
	if a.errors && e.Code < 400 && (e.Flags == "" || e.Flags == "-") && !e.Audit && e.DryRunResult == "" {
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
	if e.Audit || e.DryRunResult != "" || e.Source != "" || e.Destination != "" {
		// Rare: build the longer line only for requests that need it.
		all := append(make([]slog.Attr, 0, n+6), attrs[:n]...)
		if e.Source != "" || e.Destination != "" {
			all = append(all, slog.String("source", e.Source), slog.String("destination", e.Destination))
		}
		if e.Audit {
			all = append(all, slog.Bool("audit", true), slog.String("audit_policy", e.AuditPolicy))
		}
		if e.DryRunResult != "" {
			all = append(all, slog.String("dry_run_result", e.DryRunResult), slog.String("dry_run_policy", e.DryRunPolicy))
		}
		a.l.LogAttrs(ctx, slog.LevelInfo, "access", all...)
		return
	}
	a.l.LogAttrs(ctx, slog.LevelInfo, "access", attrs[:n]...)
}
