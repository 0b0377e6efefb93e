package proxy

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"time"
)

// replayConn is a connection whose first bytes were read to detect its
// protocol; reads return those bytes first. dst is the connection's
// original destination when the kernel redirected it to the proxy
// (transparent capture), the zero value otherwise.
type replayConn struct {
	net.Conn
	early []byte
	dst   netip.AddrPort
}

func (c *replayConn) Read(b []byte) (int, error) {
	if len(c.early) > 0 {
		n := copy(b, c.early)
		c.early = c.early[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

// CloseWrite passes a half-close on, for splice.
func (c *replayConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// detect reads the first bytes of c until sniff tells its protocol. A
// client that sends nothing within wait is taken for the client of a
// server-first protocol (TCP); once bytes arrive, detection goes on until
// sniff decides, for at most handshakeTimeout in all. It returns the
// protocol, the TLS server name if any, and the bytes read, which the
// caller must replay. An error means the connection ended or failed
// before anything was decided.
func detect(c net.Conn, wait time.Duration) (protocol, string, []byte, error) {
	start := time.Now()
	c.SetReadDeadline(start.Add(wait))
	defer c.SetReadDeadline(time.Time{})
	buf := make([]byte, 0, 1024)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, make([]byte, min(cap(buf), maxSniff-len(buf)))...)[:len(buf)]
		}
		n, err := c.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		final := len(buf) >= maxSniff
		if err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) && len(buf) == 0 {
				return protoUnknown, "", nil, err
			}
			final = true
		}
		if p, sni := sniff(buf, final); p != protoUnknown {
			return p, sni, buf, nil
		}
		if n > 0 && len(buf) == n {
			// The first bytes: from now on, the overall bound.
			c.SetReadDeadline(start.Add(handshakeTimeout))
		}
	}
}

// httpGuard wraps the client side of a plaintext stream that was taken
// for a server-first protocol because its client was silent: its first
// bytes must not be an HTTP request. Relayed as TCP, a request's headers
// would reach the app unchecked, a forged X-Forwarded-Client-Cert
// included, and no policy would have seen it as HTTP; so a stream that
// turns out to carry one is cut before any of it is passed on.
type httpGuard struct {
	net.Conn
	decided bool
	held    []byte
}

func (g *httpGuard) Read(b []byte) (int, error) {
	for !g.decided {
		p, _ := sniff(g.held, false)
		if p == protoUnknown {
			if err := g.more(); err != nil {
				// No more bytes: what there is decides.
				p, _ = sniff(g.held, true)
				if p.isHTTP() {
					return 0, errHTTPAfterSilence
				}
				g.decided = true
			}
			continue
		}
		if p.isHTTP() {
			return 0, errHTTPAfterSilence
		}
		g.decided = true
	}
	if len(g.held) > 0 {
		n := copy(b, g.held)
		g.held = g.held[n:]
		return n, nil
	}
	return g.Conn.Read(b)
}

// more reads the next bytes of the stream into held.
func (g *httpGuard) more() error {
	buf := make([]byte, 1024)
	n, err := g.Conn.Read(buf)
	g.held = append(g.held, buf[:n]...)
	return err
}

// CloseWrite passes a half-close on, for splice.
func (g *httpGuard) CloseWrite() error {
	if cw, ok := g.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return g.Conn.Close()
}

var errHTTPAfterSilence = errors.New("plaintext HTTP request on a stream taken for a server-first protocol")
