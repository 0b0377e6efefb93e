package tracing

// Headers of W3C Trace Context, as Go's http.Header spells their keys.
const (
	HeaderTraceparent = "Traceparent"
	HeaderTracestate  = "Tracestate"
)

// traceparentLen is the length of a version-00 traceparent:
// 00-<32 hex>-<16 hex>-<2 hex>.
const traceparentLen = 55

// ParseTraceparent parses a W3C traceparent header value. Version 00 must
// be exactly 55 characters; a later version may append fields after a
// dash, which are ignored as the spec says. Version ff, an all-zero trace
// or span ID, upper-case hex and anything else malformed is an error. The
// sampled flag is bit 0 of the flags.
func ParseTraceparent(s string) (SpanContext, error) {
	var sc SpanContext
	if len(s) < traceparentLen {
		return sc, ErrMalformed
	}
	var ver [1]byte
	if !decodeLowerHex(ver[:], s[0:2]) || ver[0] == 0xff {
		return sc, ErrMalformed
	}
	if ver[0] == 0 && len(s) != traceparentLen {
		return sc, ErrMalformed
	}
	if ver[0] > 0 && len(s) > traceparentLen && s[traceparentLen] != '-' {
		return sc, ErrMalformed
	}
	if s[2] != '-' || s[35] != '-' || s[52] != '-' {
		return sc, ErrMalformed
	}
	var flags [1]byte
	if !decodeLowerHex(sc.TraceID[:], s[3:35]) || !decodeLowerHex(sc.SpanID[:], s[36:52]) || !decodeLowerHex(flags[:], s[53:55]) {
		return sc, ErrMalformed
	}
	if !sc.IsValid() {
		return SpanContext{}, ErrMalformed
	}
	sc.Decision = NotSampled
	if flags[0]&1 == 1 {
		sc.Decision = Sampled
	}
	sc.Format = W3C
	return sc, nil
}

// decodeLowerHex is decodeHex that refuses upper case, as traceparent does.
func decodeLowerHex(dst []byte, s string) bool {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'F' {
			return false
		}
	}
	return decodeHex(dst, s)
}

// FormatTraceparent returns the version-00 traceparent of trace t, span s
// and the sampled flag.
func FormatTraceparent(t TraceID, s SpanID, sampled bool) string {
	b := make([]byte, 0, traceparentLen)
	b = append(b, "00-"...)
	b = appendHex(b, t[:])
	b = append(b, '-')
	b = appendHex(b, s[:])
	if sampled {
		b = append(b, "-01"...)
	} else {
		b = append(b, "-00"...)
	}
	return string(b)
}
