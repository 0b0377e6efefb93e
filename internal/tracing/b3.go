package tracing

import "strings"

// Headers of Zipkin's B3 propagation, as Go's http.Header spells their
// keys.
const (
	HeaderB3TraceID      = "X-B3-Traceid"
	HeaderB3SpanID       = "X-B3-Spanid"
	HeaderB3ParentSpanID = "X-B3-Parentspanid"
	HeaderB3Sampled      = "X-B3-Sampled"
	HeaderB3Flags        = "X-B3-Flags"
	HeaderB3             = "B3"
)

// B3 is the multi-header form of a B3 context, one field per header.
type B3 struct {
	TraceID, SpanID, ParentSpanID, Sampled, Flags string
}

// ParseB3 parses the multi-header form. A trace ID is 16 or 32 hex
// digits (a 64-bit one is widened with leading zeros), a span ID 16. The
// sampled header is 1 or 0 (true and false from old tracers too); flags 1
// is debug, which implies sampled. Headers with a decision and no IDs are
// valid: the result then carries the decision only (IsValid is false), and
// the receiver starts a trace that honours it.
func ParseB3(h B3) (SpanContext, error) {
	sc := SpanContext{Format: B3Multi}
	switch h.Sampled {
	case "":
	case "1", "true":
		sc.Decision = Sampled
	case "0", "false":
		sc.Decision = NotSampled
	default:
		return SpanContext{}, ErrMalformed
	}
	switch h.Flags {
	case "", "0":
	case "1":
		sc.Debug, sc.Decision = true, Sampled
	default:
		return SpanContext{}, ErrMalformed
	}
	if h.TraceID == "" && h.SpanID == "" {
		if sc.Decision == Undecided {
			return SpanContext{}, ErrMalformed
		}
		return sc, nil
	}
	if !parseB3TraceID(&sc.TraceID, h.TraceID) || !decodeHex(sc.SpanID[:], h.SpanID) || !sc.IsValid() {
		return SpanContext{}, ErrMalformed
	}
	if h.ParentSpanID != "" {
		var p SpanID
		if !decodeHex(p[:], h.ParentSpanID) {
			return SpanContext{}, ErrMalformed
		}
	}
	return sc, nil
}

func parseB3TraceID(t *TraceID, s string) bool {
	switch len(s) {
	case 32:
		return decodeHex(t[:], s)
	case 16:
		*t = TraceID{}
		return decodeHex(t[8:], s)
	}
	return false
}

// ParseB3Single parses the single-header form b3:
// {traceid}-{spanid}[-{sampled}[-{parentspanid}]], or a lone decision
// (0, 1 or d for debug).
func ParseB3Single(s string) (SpanContext, error) {
	sc := SpanContext{Format: B3Single}
	if len(s) == 1 {
		if !parseB3SingleDecision(&sc, s) {
			return SpanContext{}, ErrMalformed
		}
		return sc, nil
	}
	traceID, rest, ok := strings.Cut(s, "-")
	if !ok {
		return SpanContext{}, ErrMalformed
	}
	spanID, rest, more := strings.Cut(rest, "-")
	if !parseB3TraceID(&sc.TraceID, traceID) || !decodeHex(sc.SpanID[:], spanID) || !sc.IsValid() {
		return SpanContext{}, ErrMalformed
	}
	if !more {
		return sc, nil
	}
	decision, parent, hasParent := strings.Cut(rest, "-")
	if !parseB3SingleDecision(&sc, decision) {
		return SpanContext{}, ErrMalformed
	}
	if hasParent {
		var p SpanID
		if !decodeHex(p[:], parent) {
			return SpanContext{}, ErrMalformed
		}
	}
	return sc, nil
}

func parseB3SingleDecision(sc *SpanContext, s string) bool {
	switch s {
	case "1":
		sc.Decision = Sampled
	case "0":
		sc.Decision = NotSampled
	case "d":
		sc.Decision, sc.Debug = Sampled, true
	default:
		return false
	}
	return true
}

// FormatB3 returns the multi-header form of span s (child of parent, if
// valid) in trace t: the trace ID in 16 digits when it fits 64 bits, as it
// most likely came, else 32; debug as flags 1 in place of sampled.
func FormatB3(t TraceID, s, parent SpanID, sampled, debug bool) B3 {
	h := B3{TraceID: b3TraceID(t), SpanID: s.String()}
	if parent.IsValid() {
		h.ParentSpanID = parent.String()
	}
	switch {
	case debug:
		h.Flags = "1"
	case sampled:
		h.Sampled = "1"
	default:
		h.Sampled = "0"
	}
	return h
}

// FormatB3Single returns the single-header form of span s (child of
// parent, if valid) in trace t.
func FormatB3Single(t TraceID, s, parent SpanID, sampled, debug bool) string {
	b := make([]byte, 0, 32+1+16+2+17)
	b = append(b, b3TraceID(t)...)
	b = append(b, '-')
	b = appendHex(b, s[:])
	switch {
	case debug:
		b = append(b, "-d"...)
	case sampled:
		b = append(b, "-1"...)
	default:
		b = append(b, "-0"...)
	}
	if parent.IsValid() {
		b = append(b, '-')
		b = appendHex(b, parent[:])
	}
	return string(b)
}

func b3TraceID(t TraceID) string {
	if [8]byte(t[:8]) == [8]byte{} {
		return hexString(t[8:])
	}
	return t.String()
}

func hexString(b []byte) string { return string(appendHex(make([]byte, 0, 2*len(b)), b)) }
