package http1

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
)

// h2Preface opens every HTTP/2 connection with prior knowledge.
const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// maxDrainBytes is how much of a request body the handler left unread the
// server reads (and drops) to keep the connection for the next request;
// past it the connection is closed instead. net/http's figure.
const maxDrainBytes = 256 << 10

// pendMax is how much body a response of unknown length may buffer before
// its header goes out: a handler that writes less and returns gets a
// Content-Length rather than chunks, as from net/http.
const pendMax = 2 << 10

// Connection states, for Shutdown: only an idle connection (waiting for a
// request) is closed at once.
const (
	stateActive = iota
	stateIdle
	stateClosed
)

// serverConn is one connection served by Server, used by its own
// goroutine (ServeConn) and, for the watch, by the server's sweep.
type serverConn struct {
	s        *Server
	c        net.Conn
	cr       connReader
	br       *bufio.Reader
	bw       *bufio.Writer
	wmu      sync.Mutex // the response's header against a 100 Continue
	pend     []byte     // body held back before the header (pendMax)
	remote   string
	tlsState *tls.ConnectionState
	deadline time.Time // the read deadline in force, as the goroutine set it

	mu    sync.Mutex // guards state against Shutdown
	state int

	lastMethod string
	handedOff  bool // to Fallback, or hijacked: not ours to close
	broken     bool // a write failed or a handler panicked
}

func newServerConn(s *Server, c net.Conn) *serverConn {
	sc := &serverConn{s: s, c: c, state: stateIdle}
	sc.cr.init(c)
	return sc
}

// serve runs the connection's request loop.
func (sc *serverConn) serve(ctx context.Context) {
	s := sc.s
	if s.ConnContext != nil {
		ctx = s.ConnContext(ctx, sc.c)
	}
	if tc, ok := sc.c.(*tls.Conn); ok {
		st := tc.ConnectionState()
		sc.tlsState = &st
	}
	sc.remote = sc.c.RemoteAddr().String()
	sc.br = readers.Get().(*bufio.Reader)
	sc.br.Reset(&sc.cr)
	defer sc.close()

	for first := true; ; first = false {
		if !sc.setState(stateIdle) {
			return
		}
		req, err := sc.readRequest(first)
		if err != nil {
			sc.reject(err)
			return
		}
		if req == nil { // handed to Fallback
			return
		}
		if !sc.setState(stateActive) {
			return
		}
		if !sc.serveRequest(ctx, req) {
			return
		}
	}
}

// putWriter returns the connection's writer, flushed, to the pool.
func (sc *serverConn) putWriter() {
	if sc.bw != nil {
		sc.bw.Reset(nil)
		writers.Put(sc.bw)
		sc.bw = nil
	}
}

// close ends the connection unless it was handed off, and returns the
// buffers to their pools when nobody else holds them.
func (sc *serverConn) close() {
	if sc.handedOff {
		return
	}
	sc.mu.Lock()
	sc.state = stateClosed
	sc.mu.Unlock()
	sc.c.Close()
	sc.br.Reset(nil)
	readers.Put(sc.br)
	sc.putWriter()
}

// setState moves the connection to active or idle; false when Shutdown
// has closed it, or (for idle) the server is shutting down. The writer
// goes with the active state: an idle connection, as most kept-alive
// ones are, holds none.
func (sc *serverConn) setState(st int) bool {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.state == stateClosed || st == stateIdle && sc.s.closing.Load() {
		return false
	}
	sc.state = st
	switch {
	case st == stateIdle:
		sc.putWriter()
	case sc.bw == nil:
		sc.bw = writers.Get().(*bufio.Writer)
		sc.bw.Reset(sc.c)
	}
	return true
}

// closeIfIdle closes the connection if it is waiting for a request.
func (sc *serverConn) closeIfIdle() {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.state == stateIdle {
		sc.state = stateClosed
		sc.c.Close()
	}
}

// readRequest waits for the next request (IdleTimeout), reads its line and
// headers (ReadHeaderTimeout, MaxHeaderBytes) with net/http's parser and
// applies net/http's server checks. On the first request of a connection,
// the HTTP/2 preface hands the connection to Fallback: nil, nil.
func (sc *serverConn) readRequest(first bool) (*http.Request, error) {
	s := sc.s
	sc.cr.setLimit(s.maxHeaderBytes() + 4096)
	if first {
		// As net/http: the first request, its wait included, is bound by
		// ReadHeaderTimeout, so a silent client does not hold the
		// connection for IdleTimeout.
		sc.headerDeadline()
	} else if sc.br.Buffered() == 0 {
		sc.waitDeadline()
	}
	if _, err := sc.br.Peek(1); err != nil {
		return nil, err
	}
	if !first && !headerBuffered(sc.br) {
		// The rest of the headers is still to come: from now on they
		// have ReadHeaderTimeout. (When they are all here, as they
		// nearly always are, there is nothing to time.)
		sc.headerDeadline()
	}
	if first {
		if h2, err := sc.h2Preface(); err != nil || h2 {
			return nil, err
		}
	}
	if sc.lastMethod == http.MethodPost {
		// RFC 9112 section 2.2: tolerate the CRLF that old clients send
		// after a POST body.
		peek, _ := sc.br.Peek(4)
		sc.br.Discard(leadingCRLF(peek))
	}
	req, err := readRequest(sc.br)
	if err != nil {
		if sc.cr.hitLimit() {
			return nil, errTooLarge
		}
		return nil, err
	}
	sc.cr.setLimit(-1)
	sc.lastMethod = req.Method
	if req.Body != nil && req.Body != http.NoBody {
		// A body is read at the client's pace, as by net/http's server
		// (which has no ReadTimeout here). Without one, nothing reads
		// the connection until the next wait, which sets its own.
		sc.setDeadline(time.Time{})
	}
	if err := checkRequest(req); err != nil {
		return nil, err
	}
	return req, nil
}

// setDeadline sets the connection's read deadline when it changes.
func (sc *serverConn) setDeadline(t time.Time) {
	if !t.Equal(sc.deadline) {
		sc.c.SetReadDeadline(t)
		sc.deadline = t
	}
}

// headerDeadline bounds the reading of a request's headers.
func (sc *serverConn) headerDeadline() {
	if d := sc.s.ReadHeaderTimeout; d > 0 {
		sc.setDeadline(time.Now().Add(d))
	}
}

// waitDeadline bounds the wait for the next request by IdleTimeout,
// keeping the deadline in force while it is at least 7/8 of IdleTimeout
// away: a connection idle for IdleTimeout is closed after 7/8 of it at the
// earliest, and a busy one moves its deadline once per IdleTimeout/8, not
// once per request.
func (sc *serverConn) waitDeadline() {
	d := sc.s.IdleTimeout
	if d <= 0 {
		sc.setDeadline(time.Time{})
		return
	}
	now := time.Now()
	if sc.deadline.IsZero() || sc.deadline.Sub(now) < d-d/8 {
		sc.setDeadline(now.Add(d))
	}
}

// headerBuffered reports whether the buffered bytes hold a whole request
// line and header (an empty line ends it), so that reading them takes no
// read from the connection.
func headerBuffered(br *bufio.Reader) bool {
	b, _ := br.Peek(br.Buffered())
	return bytes.Contains(b, []byte("\n\r\n")) || bytes.Contains(b, []byte("\n\n"))
}

// h2Preface reports whether the connection opens with the HTTP/2 preface,
// reading only as far as the bytes match it, and if so hands the
// connection to Fallback with what was read.
func (sc *serverConn) h2Preface() (bool, error) {
	for i := 1; i <= len(h2Preface); i++ {
		b, err := sc.br.Peek(i)
		if err != nil {
			return false, err
		}
		if b[i-1] != h2Preface[i-1] {
			return false, nil
		}
	}
	if sc.s.Fallback == nil {
		return false, &statusError{http.StatusHTTPVersionNotSupported, "unsupported protocol version"}
	}
	buffered, _ := sc.br.Peek(sc.br.Buffered())
	early := append([]byte(nil), buffered...)
	sc.c.SetReadDeadline(time.Time{})
	sc.handedOff = true
	sc.br.Reset(nil)
	readers.Put(sc.br)
	sc.putWriter()
	sc.s.untrack(sc)
	sc.s.Fallback(sc.c, early)
	return true, nil
}

// checkRequest applies what net/http's server checks beyond the parser:
// HTTP/1.x only, Host present in HTTP/1.1 and well formed, every header
// name and value valid. The Host header leaves the map (it is r.Host).
func checkRequest(req *http.Request) error {
	if req.ProtoMajor != 1 {
		return &statusError{http.StatusHTTPVersionNotSupported, "unsupported protocol version"}
	}
	hosts, haveHost := req.Header["Host"]
	if req.ProtoAtLeast(1, 1) && (!haveHost || len(hosts) == 0) && req.Method != http.MethodConnect {
		return &statusError{http.StatusBadRequest, "missing required Host header"}
	}
	if len(hosts) == 1 && !httpguts.ValidHostHeader(hosts[0]) {
		return &statusError{http.StatusBadRequest, "malformed Host header"}
	}
	for k, vv := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return &statusError{http.StatusBadRequest, "invalid header name"}
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return &statusError{http.StatusBadRequest, "invalid header value"}
			}
		}
	}
	delete(req.Header, "Host")
	return nil
}

// leadingCRLF counts the CR and LF bytes b starts with.
func leadingCRLF(b []byte) int {
	n := 0
	for _, c := range b {
		if c != '\r' && c != '\n' {
			break
		}
		n++
	}
	return n
}

// statusError is a request refused before its handler, with the status
// and the text of net/http's answer.
type statusError struct {
	code int
	text string
}

func (e *statusError) Error() string { return fmt.Sprintf("%d %s", e.code, e.text) }

// errTooLarge is a request line and headers past MaxHeaderBytes.
var errTooLarge = errors.New("http1: request headers too large")

// reject answers a request that could not be read as net/http's server
// does, then the connection closes: nothing for a client that went away
// or timed out, 431 past the header cap, 501 for a transfer coding it
// does not know, 400 (with the reason, for the checks) otherwise.
func (sc *serverConn) reject(err error) {
	const headers = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"
	var se *statusError
	switch {
	case err == errTooLarge:
		const text = "431 Request Header Fields Too Large"
		io.WriteString(sc.c, "HTTP/1.1 "+text+headers+text)
		sc.lingerClose()
	case fmt.Sprintf("%T", err) == "*http.unsupportedTEError":
		// net/http's parser refuses a transfer coding it does not
		// implement (or a repeated one) with this unexported type; its
		// server answers 501.
		io.WriteString(sc.c, "HTTP/1.1 501 Not Implemented"+headers+"Unsupported transfer encoding")
	case isCommonNetReadError(err):
	case errors.As(err, &se):
		status := fmt.Sprintf("%d %s: %s", se.code, http.StatusText(se.code), se.text)
		io.WriteString(sc.c, "HTTP/1.1 "+status+headers+status)
	default:
		const text = "400 Bad Request"
		io.WriteString(sc.c, "HTTP/1.1 "+text+headers+text)
	}
}

// lingerClose half-closes the connection and reads (and drops) what the
// client is still sending, for up to half a second, so that closing with
// unread bytes does not reset the connection before the client has read
// the answer.
func (sc *serverConn) lingerClose() {
	if cw, ok := sc.c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	sc.c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	io.CopyN(io.Discard, sc.c, maxDrainBytes)
}

// isCommonNetReadError reports a read error that gets no answer: the
// client closed or went silent.
func isCommonNetReadError(err error) bool {
	if err == io.EOF {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "read"
}

// serveRequest runs one request through the handler and finishes its
// response; it reports whether the connection may carry another.
func (sc *serverConn) serveRequest(ctx context.Context, req *http.Request) bool {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req = req.WithContext(ctx)
	req.RemoteAddr = sc.remote
	req.TLS = sc.tlsState

	var body *requestBody
	if req.Body != nil && req.Body != http.NoBody {
		body = &requestBody{sc: sc, rc: req.Body}
		req.Body = body
	}
	if expect := req.Header.Get("Expect"); expect != "" {
		if hasToken(expect, "100-continue") {
			if body != nil && req.ProtoAtLeast(1, 1) {
				body.mayContinue, body.owesContinue = true, true
			}
		} else {
			io.WriteString(sc.c, "HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
			return false
		}
	}
	w := &response{sc: sc, req: req, body: body, header: make(http.Header), contentLength: -1}
	sc.cr.startRequest(cancel)
	if body == nil {
		sc.armWatch()
	}
	ok := sc.runHandler(w, req)
	sc.stopWatch()
	if w.hijacked {
		return false
	}
	if !ok {
		sc.broken = true
		return false
	}
	keep := w.finish()
	return keep && !sc.broken && !sc.cr.clientGone()
}

// runHandler calls the handler, turning a panic into a closed connection
// (http.ErrAbortHandler, which ReverseProxy uses to abort a response,
// quietly; anything else with its stack in the log).
func (sc *serverConn) runHandler(w *response, req *http.Request) (ok bool) {
	defer func() {
		if v := recover(); v != nil {
			ok = false
			if v != http.ErrAbortHandler {
				buf := make([]byte, 64<<10)
				buf = buf[:runtime.Stack(buf, false)]
				sc.s.logf("http1: panic serving request", "remote", sc.remote, "panic", fmt.Sprint(v), "stack", string(buf))
			}
		}
	}()
	sc.s.Handler.ServeHTTP(w, req)
	return true
}

// armWatch lets the sweep watch the connection for the client going away;
// called when the request body is done.
func (sc *serverConn) armWatch() { sc.cr.arm() }

// stopWatch ends the request's watch; one that ran cleared the deadline.
func (sc *serverConn) stopWatch() {
	if sc.cr.stopWatch() {
		sc.deadline = time.Time{}
	}
}

// hasToken reports whether the comma-separated list v holds token,
// ignoring case and spaces.
func hasToken(v, token string) bool {
	for part := range strings.SplitSeq(v, ",") {
		if strings.EqualFold(strings.TrimSpace(part), token) {
			return true
		}
	}
	return false
}
