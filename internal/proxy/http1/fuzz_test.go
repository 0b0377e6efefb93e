package http1

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"testing"
	"time"
)

// FuzzResponse has an app answer a GET with arbitrary bytes, then close
// its side. Whatever they are, the exchange ends (no hang, no panic), and
// a connection is pooled only after a response read in full.
func FuzzResponse(f *testing.F) {
	for _, seed := range []string{
		okResponse,
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n",
		"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.1 101 Switching Protocols\r\n\r\n",
		"HTTP/1.0 200 OK\r\n\r\nuntil close",
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n",
		"HTTP/1.1 200 OK\r\nX-Fold: a\r\n b\r\n\r\n",
		"HTTP/1.1 999 \r\nContent-Length: 0\r\n\r\n" + okResponse,
		"\x00\xff garbage",
	} {
		f.Add([]byte(seed))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	payloads := make(chan []byte, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			serveFuzz(c, <-payloads)
		}
	}()
	f.Cleanup(func() {
		ln.Close()
		<-done
	})

	f.Fuzz(func(t *testing.T, payload []byte) {
		tr, err := New(Config{Addr: ln.Addr().String(), Fallback: &fallback{}, MaxResponseHeaderBytes: 4 << 10})
		if err != nil {
			t.Fatal(err)
		}
		defer tr.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
			Got1xxResponse: func(int, textproto.MIMEHeader) error { return nil },
		})
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://app/", nil)
		payloads <- payload
		resp, err := tr.RoundTrip(req)
		if err == nil {
			_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
		}
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("exchange hung on %q", payload)
		}
		if err != nil && tr.idleCount() != 0 {
			t.Fatalf("connection pooled after %v", err)
		}
	})
}

// serveFuzz reads a request from c, answers with payload, closes its
// side and waits for the client to close.
func serveFuzz(c net.Conn, payload []byte) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	br := bufio.NewReader(c)
	if _, err := http.ReadRequest(br); err != nil {
		return
	}
	c.Write(payload)
	c.(*net.TCPConn).CloseWrite()
	io.Copy(io.Discard, br)
}
