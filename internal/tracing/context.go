package tracing

import (
	"encoding/hex"
	"errors"
)

// TraceID identifies a trace: 16 bytes, never all zero.
type TraceID [16]byte

// SpanID identifies a span within a trace: 8 bytes, never all zero.
type SpanID [8]byte

// IsValid reports whether t is not all zero (W3C: all zero is invalid).
func (t TraceID) IsValid() bool { return t != TraceID{} }

// IsValid reports whether s is not all zero.
func (s SpanID) IsValid() bool { return s != SpanID{} }

// String returns t as 32 lower-case hex digits.
func (t TraceID) String() string { return hex.EncodeToString(t[:]) }

// String returns s as 16 lower-case hex digits.
func (s SpanID) String() string { return hex.EncodeToString(s[:]) }

// Format is the header family a trace context arrived in, so that the
// proxy answers in the same one.
type Format uint8

// Header families, in the order the proxy looks for them.
const (
	NoFormat Format = iota
	W3C             // traceparent (+ tracestate)
	B3Multi         // x-b3-traceid, x-b3-spanid, x-b3-sampled, x-b3-flags
	B3Single        // b3
)

// Decision is a sampling decision carried by a trace context.
type Decision uint8

// Decisions: a context may leave it to the receiver (B3 without a
// sampled flag), or say yes or no. W3C's traceparent always decides.
const (
	Undecided Decision = iota
	Sampled
	NotSampled
)

// SpanContext is the part of a trace context that crosses a hop: which
// trace, which span is the parent, and whether the trace is sampled.
type SpanContext struct {
	TraceID  TraceID
	SpanID   SpanID
	Decision Decision
	// Debug is B3's x-b3-flags: 1 (or b3 "d"): sample, whatever the rate.
	Debug bool
	// Format is where the context came from (NoFormat: started here).
	Format Format
}

// IsValid reports whether sc names a trace and a span.
func (sc SpanContext) IsValid() bool { return sc.TraceID.IsValid() && sc.SpanID.IsValid() }

// Errors of the header parsers. A proxy that meets one starts a new trace,
// as Envoy does, rather than refusing the request.
var (
	ErrMalformed   = errors.New("tracing: malformed trace context")
	ErrUnsupported = errors.New("tracing: unsupported trace context version")
)

// decodeHex decodes exactly len(dst)*2 lower- or upper-case hex digits.
func decodeHex(dst []byte, s string) bool {
	if len(s) != 2*len(dst) {
		return false
	}
	for i := range dst {
		hi, ok1 := unhex(s[2*i])
		lo, ok2 := unhex(s[2*i+1])
		if !ok1 || !ok2 {
			return false
		}
		dst[i] = hi<<4 | lo
	}
	return true
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

const hexDigits = "0123456789abcdef"

func appendHex(b []byte, src []byte) []byte {
	for _, c := range src {
		b = append(b, hexDigits[c>>4], hexDigits[c&0xf])
	}
	return b
}
