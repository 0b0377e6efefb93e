package http1

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// FuzzServer sends arbitrary bytes to a Server as a client's side of a
// connection, then half-closes it. Whatever they are, the server answers
// what it can and closes the connection (no hang), never panics, and what
// it writes starts with a status line.
func FuzzServer(f *testing.F) {
	for _, seed := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET /2 HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
		"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\n\r\n",
		"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\nbytes",
		h2Preface,
		"PRI * HTTP/2.0\r\n\r\nXY\r\n\r\n",
		"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
		"\x16\x03\x01\x00\x05hello",
	} {
		f.Add([]byte(seed))
	}
	ts := startServer(f, &Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n, _ := io.Copy(io.Discard, r.Body)
			if r.Header.Get("Upgrade") != "" {
				if c, brw, err := w.(http.Hijacker).Hijack(); err == nil {
					brw.WriteString("HTTP/1.1 101 Switching Protocols\r\n\r\n")
					brw.Flush()
					io.Copy(io.Discard, brw)
					c.Close()
					return
				}
			}
			w.Header().Set("X-Read", strconv.FormatInt(n, 10))
			io.WriteString(w, r.Method)
		}),
		Fallback:          func(c net.Conn, _ []byte) { c.Close() },
		ReadHeaderTimeout: 2 * time.Second,
		IdleTimeout:       2 * time.Second,
		WatchAfter:        time.Millisecond,
		MaxHeaderBytes:    1 << 10,
	})
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := net.Dial("tcp", ts.ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		go func() {
			c.Write(in)
			c.(*net.TCPConn).CloseWrite()
		}()
		out, err := io.ReadAll(c)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("the server neither answered nor closed within 10 s; wrote %q", out)
		}
		if len(out) > 0 && string(out[:min(len(out), 5)]) != "HTTP/"[:min(len(out), 5)] {
			t.Fatalf("output does not start with a status line: %q", out)
		}
	})
}
