package http1

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// response is the http.ResponseWriter of one request served by Server. It
// frames the body as net/http's server does: by the Content-Length the
// handler set, else, for a body that is all written before the handler
// returns and fits pendMax, by one it computes, else chunked (HTTP/1.1)
// or up to the connection's close (HTTP/1.0). Everything goes through the
// connection's bufio.Writer, so a short response is one write.
type response struct {
	sc     *serverConn
	req    *http.Request
	body   *requestBody // nil when the request has none
	header http.Header

	wroteHeader   bool  // the handler's final status is set
	headerSent    bool  // the status line and header are in bw
	status        int   // the final status
	contentLength int64 // -1: unknown
	written       int64 // body bytes the handler wrote
	chunked       bool
	closeAfter    bool     // the connection ends after this response
	trailers      []string // declared in the Trailer header
	hijacked      bool
}

// Header returns the response's header map; after the header is sent,
// keys set there are the trailers (see http.TrailerPrefix).
func (w *response) Header() http.Header { return w.header }

// WriteHeader sets the response's status; an informational status (1xx
// but 101) is written at once and may be followed by others.
func (w *response) WriteHeader(code int) {
	if w.hijacked || w.wroteHeader {
		return
	}
	if code < 100 || code > 999 {
		panic("http1: invalid WriteHeader code " + strconv.Itoa(code))
	}
	if code < 200 && code != http.StatusSwitchingProtocols {
		w.writeInformational(code)
		return
	}
	w.wroteHeader, w.status = true, code
	if cl := w.header.Get("Content-Length"); cl != "" {
		if v, err := strconv.ParseInt(cl, 10, 64); err == nil && v >= 0 {
			w.contentLength = v
		} else {
			w.header.Del("Content-Length")
		}
	}
}

// writeInformational writes a 1xx response with the current header.
func (w *response) writeInformational(code int) {
	sc := w.sc
	sc.wmu.Lock()
	defer sc.wmu.Unlock()
	if w.headerSent {
		return
	}
	if w.body != nil && code == http.StatusContinue {
		w.body.owesContinue = false
	}
	writeStatusLine(sc.bw, w.req, code)
	w.header.WriteSubset(sc.bw, nil)
	sc.bw.WriteString("\r\n")
	if sc.bw.Flush() != nil {
		sc.broken = true
	}
}

// Write writes body bytes, sending the header first when it has not gone.
func (w *response) Write(p []byte) (int, error) {
	if w.hijacked {
		return 0, http.ErrHijacked
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !bodyAllowedForStatus(w.status) {
		return 0, http.ErrBodyNotAllowed
	}
	if w.contentLength >= 0 && w.written+int64(len(p)) > w.contentLength {
		return 0, http.ErrContentLength
	}
	w.written += int64(len(p))
	if w.req.Method == http.MethodHead {
		return len(p), nil // a HEAD response has no body: eaten, as by net/http
	}
	sc := w.sc
	if !w.headerSent {
		if w.contentLength < 0 && len(sc.pend)+len(p) <= pendMax {
			sc.pend = append(sc.pend, p...)
			return len(p), nil
		}
		w.sendHeader(false)
	}
	return w.writeBody(p)
}

// writeBody writes p as the framing says: a chunk, or as it is.
func (w *response) writeBody(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	bw := w.sc.bw
	if w.chunked {
		bw.WriteString(strconv.FormatInt(int64(len(p)), 16))
		bw.WriteString("\r\n")
	}
	n, err := bw.Write(p)
	if w.chunked && err == nil {
		_, err = bw.WriteString("\r\n")
	}
	if err != nil {
		w.sc.broken = true
	}
	return n, err
}

// Flush sends what is written so far: the header, the held-back body
// (as a chunk) and the buffer.
func (w *response) Flush() {
	if w.hijacked {
		return
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.headerSent {
		w.sendHeader(false)
	}
	if w.sc.bw.Flush() != nil {
		w.sc.broken = true
	}
}

// Hijack hands the connection to the handler (a protocol upgrade): the
// server forgets it and neither closes nor reads it again.
func (w *response) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.hijacked {
		return nil, nil, http.ErrHijacked
	}
	sc := w.sc
	sc.stopWatch()
	sc.setDeadline(time.Time{}) // the connection is the handler's, with no deadline of ours
	if w.headerSent && sc.bw.Flush() != nil {
		return nil, nil, errors.New("http1: flush before hijack failed")
	}
	w.hijacked = true
	sc.handedOff = true
	sc.s.untrack(sc)
	return sc.c, bufio.NewReadWriter(sc.br, sc.bw), nil
}

// bodyAllowed reports whether the status (and method) let the response
// carry a body.
func (w *response) bodyAllowed() bool {
	return bodyAllowedForStatus(w.status) && w.req.Method != http.MethodHead
}

func bodyAllowedForStatus(code int) bool {
	switch {
	case code >= 100 && code <= 199, code == http.StatusNoContent, code == http.StatusNotModified:
		return false
	}
	return true
}

// sendHeader writes the status line and the header into bw, choosing the
// framing; done says the handler has returned (so a held-back body is
// the whole body).
func (w *response) sendHeader(done bool) {
	sc := w.sc
	sc.wmu.Lock()
	defer sc.wmu.Unlock()
	w.headerSent = true
	h := w.header
	if w.body != nil && w.body.owesContinue {
		// The client waits for a 100 Continue that will not come now:
		// whether it sends its body or not, the next request cannot be
		// found.
		w.body.noContinue = true
		w.closeAfter = true
	}
	delete(h, "Transfer-Encoding")
	switch {
	case !bodyAllowedForStatus(w.status):
		delete(h, "Content-Length")
		if w.status == http.StatusNotModified {
			delete(h, "Content-Type")
		}
	case w.contentLength >= 0:
	case done && w.req.Method != http.MethodHead:
		w.contentLength = int64(len(sc.pend))
		h["Content-Length"] = []string{strconv.Itoa(len(sc.pend))}
	case w.req.Method == http.MethodHead:
	case w.req.ProtoAtLeast(1, 1):
		w.chunked = true
		h["Transfer-Encoding"] = []string{"chunked"}
	default:
		w.closeAfter = true // HTTP/1.0: the body ends with the connection
	}
	if w.req.Close || sc.s.closing.Load() || hasToken(h.Get("Connection"), "close") ||
		w.status == http.StatusSwitchingProtocols { // without a hijack: no more HTTP on it
		w.closeAfter = true
	}
	if w.closeAfter {
		h.Set("Connection", "close")
	} else if !w.req.ProtoAtLeast(1, 1) {
		h.Set("Connection", "keep-alive")
	}
	if _, ok := h["Date"]; !ok {
		h["Date"] = []string{time.Now().UTC().Format(http.TimeFormat)}
	}
	if w.chunked {
		w.trailers = declaredTrailers(h)
	}
	writeStatusLine(sc.bw, w.req, w.status)
	h.WriteSubset(sc.bw, trailerKeys(h))
	sc.bw.WriteString("\r\n")
	if len(sc.pend) > 0 {
		pend := sc.pend
		sc.pend = sc.pend[:0]
		w.writeBody(pend)
	}
}

// finish completes the response after the handler: header, held-back
// body, the last chunk and trailers, and the flush. It reports whether the
// connection may carry another request.
func (w *response) finish() bool {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.headerSent {
		if w.body != nil && !w.body.drain() {
			w.closeAfter = true
		}
		w.sendHeader(true)
	} else if w.body != nil && !w.body.drain() {
		w.closeAfter = true
	}
	bw := w.sc.bw
	if w.chunked {
		bw.WriteString("0\r\n")
		w.writeTrailers()
		bw.WriteString("\r\n")
	}
	if w.bodyAllowed() && w.contentLength >= 0 && w.written != w.contentLength {
		// Short: the client would take the next response's bytes for
		// the rest of this body.
		w.closeAfter = true
	}
	if bw.Flush() != nil {
		w.sc.broken = true
	}
	return !w.closeAfter
}

// writeTrailers writes the declared trailers and those set with
// http.TrailerPrefix, as net/http does.
func (w *response) writeTrailers() {
	bw := w.sc.bw
	for _, k := range w.trailers {
		for _, v := range w.header[k] {
			writeField(bw, k, v)
		}
	}
	for k, vv := range w.header {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
			for _, v := range vv {
				writeField(bw, http.CanonicalHeaderKey(name), v)
			}
		}
	}
}

// writeField writes one header field, with a value's line breaks made
// spaces so that a handler cannot inject fields.
func writeField(bw *bufio.Writer, k, v string) {
	if !validFieldName(k) {
		return
	}
	bw.WriteString(k)
	bw.WriteString(": ")
	if strings.ContainsAny(v, "\r\n") {
		v = strings.Map(func(r rune) rune {
			if r == '\r' || r == '\n' {
				return ' '
			}
			return r
		}, v)
	}
	bw.WriteString(v)
	bw.WriteString("\r\n")
}

func validFieldName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"(),/:;<=>?@[\\]{}", c) >= 0 {
			return false
		}
	}
	return true
}

// declaredTrailers returns the canonical names listed in h's Trailer
// header.
func declaredTrailers(h http.Header) []string {
	var names []string
	for _, v := range h["Trailer"] {
		for k := range strings.SplitSeq(v, ",") {
			if k = strings.TrimSpace(k); k != "" {
				names = append(names, http.CanonicalHeaderKey(k))
			}
		}
	}
	return names
}

// trailerKeys are the keys of h to leave out of the header: the trailers
// set with http.TrailerPrefix before the header went out. nil (most
// responses) when there are none.
func trailerKeys(h http.Header) map[string]bool {
	var ex map[string]bool
	for k := range h {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			if ex == nil {
				ex = map[string]bool{}
			}
			ex[k] = true
		}
	}
	return ex
}

// writeStatusLine writes the status line, in the request's protocol
// version as net/http's server does.
func writeStatusLine(bw *bufio.Writer, req *http.Request, code int) {
	if req.ProtoAtLeast(1, 1) {
		bw.WriteString("HTTP/1.1 ")
	} else {
		bw.WriteString("HTTP/1.0 ")
	}
	var b [3]byte
	bw.Write(strconv.AppendInt(b[:0], int64(code), 10))
	bw.WriteByte(' ')
	text := http.StatusText(code)
	if text == "" {
		text = "status code " + strconv.Itoa(code)
	}
	bw.WriteString(text)
	bw.WriteString("\r\n")
}

// requestBody is a request's body as the handler sees it: it sends the
// 100 Continue the client waits for on the first read, starts the watch
// once it is done, and keeps its bytes from being read after the handler
// has returned (a goroutine of the handler's may still hold it), when the
// server drains what is left.
type requestBody struct {
	sc *serverConn
	mu sync.Mutex
	rc io.ReadCloser
	// mayContinue: the client sent Expect: 100-continue (set before the
	// handler runs). owesContinue: it has not been told to go on yet;
	// noContinue: the final header went first, so it never will be.
	// Both guarded by sc.wmu.
	mayContinue              bool
	owesContinue, noContinue bool
	eof, closed              bool
}

func (b *requestBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	if b.eof {
		return 0, io.EOF
	}
	if b.mayContinue {
		b.sendContinue()
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.eof = true
		b.sc.armWatch()
	}
	return n, err
}

// sendContinue writes the 100 Continue, unless the final header has gone.
func (b *requestBody) sendContinue() {
	sc := b.sc
	sc.wmu.Lock()
	defer sc.wmu.Unlock()
	if !b.owesContinue || b.noContinue {
		return
	}
	b.owesContinue = false
	sc.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
	if sc.bw.Flush() != nil {
		sc.broken = true
	}
}

// Close makes further reads fail; the connection's goroutine decides
// what happens to the bytes left.
func (b *requestBody) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	return nil
}

// drain ends the body for the handler and reads what it left, up to
// maxDrainBytes; it reports whether the connection is still at a request
// boundary.
func (b *requestBody) drain() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	if b.eof {
		return true
	}
	b.sc.wmu.Lock()
	owed := b.owesContinue
	b.sc.wmu.Unlock()
	if owed {
		return false // never told to send it: it may or may not come
	}
	_, err := io.CopyN(io.Discard, b.rc, maxDrainBytes+1)
	b.eof = err == io.EOF
	return b.eof
}
