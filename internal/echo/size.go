package echo

import (
	"net/http"
	"strconv"
)

// MaxSize is the largest body /size/N serves: 16 MiB.
const MaxSize = 16 << 20

// filler is the content of /size bodies, written in chunks of its length.
// A printable repeating alphabet keeps the bodies readable and lets a test
// check every byte.
var filler = func() []byte {
	b := make([]byte, 32<<10)
	for i := range b {
		b[i] = 'a' + byte(i%26)
	}
	return b
}()

// serveSize answers /size/N with an N-byte body. This is the route load
// tests hit, so it allocates nothing but the Content-Length value.
func (s *Server) serveSize(w http.ResponseWriter, r *http.Request, arg string) {
	if !allowRead(w, r) {
		return
	}
	n, ok := parseSize(arg)
	if !ok {
		writeError(w, http.StatusBadRequest, "size must be a decimal number of bytes from 0 to "+strconv.Itoa(MaxSize)+", got "+strconv.Quote(arg))
		return
	}
	h := w.Header()
	h["Content-Type"] = contentTypeOctet
	h["Content-Length"] = []string{strconv.Itoa(n)}
	if r.Method == http.MethodHead {
		return
	}
	for n > 0 {
		chunk := min(n, len(filler))
		if _, err := w.Write(filler[:chunk]); err != nil {
			return // the client went away; nothing left to tell it
		}
		n -= chunk
	}
}

// parseSize parses N of /size/N: decimal digits only (no sign, no
// spaces), at most MaxSize.
func parseSize(s string) (int, bool) {
	if s == "" || len(s) > len(strconv.Itoa(MaxSize)) {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	if n > MaxSize {
		return 0, false
	}
	return n, true
}
