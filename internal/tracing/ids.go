package tracing

import (
	"encoding/binary"
	"math/rand/v2"
)

// IDs makes trace, span and request IDs from a source of random 64-bit
// numbers. Rand is called for every ID; it must be safe for concurrent
// use. The zero IDs uses the runtime's ChaCha8 generator (math/rand/v2),
// seeded from the OS and unpredictable to callers (IDs are not secrets,
// but a predictable x-request-id or trace ID lets a caller collide with
// another's), with no allocation and no system call per ID.
type IDs struct {
	Rand func() uint64
}

func (g IDs) next() uint64 {
	if g.Rand != nil {
		return g.Rand()
	}
	return rand.Uint64()
}

// Uint64 returns a random number, for Sample.
func (g IDs) Uint64() uint64 { return g.next() }

// TraceID returns a new, valid trace ID.
func (g IDs) TraceID() TraceID {
	for {
		var t TraceID
		binary.BigEndian.PutUint64(t[:8], g.next())
		binary.BigEndian.PutUint64(t[8:], g.next())
		if t.IsValid() {
			return t
		}
	}
}

// SpanID returns a new, valid span ID.
func (g IDs) SpanID() SpanID {
	for {
		var s SpanID
		binary.BigEndian.PutUint64(s[:], g.next())
		if s.IsValid() {
			return s
		}
	}
}

// RequestID returns a new x-request-id: a version 4 UUID in its canonical
// 36-character form, as Envoy generates.
func (g IDs) RequestID() string {
	var u [16]byte
	binary.BigEndian.PutUint64(u[:8], g.next())
	binary.BigEndian.PutUint64(u[8:], g.next())
	u[6] = u[6]&0x0f | 0x40 // version 4
	u[8] = u[8]&0x3f | 0x80 // RFC 4122 variant
	var b [36]byte
	j := 0
	for i, c := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b[j] = '-'
			j++
		}
		b[j], b[j+1] = hexDigits[c>>4], hexDigits[c&0xf]
		j += 2
	}
	return string(b[:])
}

// HeaderRequestID is Envoy's request ID header, as Go's http.Header
// spells its key.
const HeaderRequestID = "X-Request-Id"
