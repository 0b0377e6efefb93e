package proxy

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"time"
)

// Inbound side of plaintext TCP and transparent capture.
//
// A PERMISSIVE (or DISABLE) port takes mutual TLS, plaintext HTTP and
// plaintext raw TCP on one listener. Which one a connection is, its first
// bytes say (admit): a TLS ClientHello, an HTTP request line (or the
// HTTP/2 preface), anything else, or nothing within the detection
// time-out (the client of a server-first protocol, waiting for a banner).
// Plaintext HTTP goes through the HTTP server, which replaces any
// X-Forwarded-Client-Cert; plaintext raw TCP is relayed with no identity,
// authorized with Istio's TCP semantics. Bytes are never parsed as HTTP
// and then passed on raw: a stream is relayed as TCP only when its first
// bytes are not an HTTP request, and one taken for a server-first
// protocol is cut if its client then sends one (httpGuard).
//
// With capture (Config.OriginalDst), connections redirected to the
// inbound listener carry the app port the caller connected to: that is
// the port delivered to (Istio's inbound passthrough), and the one
// PeerAuthentication and authorization see.

// redirectedTo returns the original destination of an inbound connection
// the kernel redirected to the listener; the zero value when it was not
// redirected (or capture is off). It reports false for a connection
// redirected from one of the proxy's own ports, which must never be
// delivered to.
func (p *Proxy) redirectedTo(c net.Conn) (netip.AddrPort, bool) {
	if p.cfg.OriginalDst == nil {
		return netip.AddrPort{}, true
	}
	dst, err := p.cfg.OriginalDst(c)
	if err != nil {
		return netip.AddrPort{}, true
	}
	dst = unmapPort(dst)
	local, _ := netip.ParseAddrPort(c.LocalAddr().String())
	if dst == unmapPort(local) || dst.Port() == local.Port() {
		return netip.AddrPort{}, true
	}
	for _, ln := range p.listeners() {
		if ln == p.inLn {
			continue
		}
		if ap, err := netip.ParseAddrPort(ln.Addr().String()); err == nil && ap.Port() == dst.Port() {
			return dst, false
		}
	}
	return dst, true
}

// appTarget returns the address and port of the app a connection to dst
// (zero: not redirected) is delivered to: the app's own address, or the
// port the caller connected to on the app's host.
func (p *Proxy) appTarget(dst netip.AddrPort) (string, uint32) {
	if !dst.IsValid() || uint32(dst.Port()) == p.appPort {
		return p.cfg.AppAddr, p.appPort
	}
	host, _, _ := net.SplitHostPort(p.cfg.AppAddr)
	return net.JoinHostPort(host, strconv.Itoa(int(dst.Port()))), uint32(dst.Port())
}

// servePlainTCP serves an admitted plaintext connection that is not HTTP:
// it is authorized as a TCP connection with no identity and relayed to
// the app. silent says the client sent nothing before the detection
// time-out; if it then speaks before the app does, its bytes are returned
// (redo) for the caller to detect again: a slow TLS or HTTP client is
// served as one. The caller closes c.
func (in *inbound) servePlainTCP(ctx context.Context, c net.Conn, silent bool) (redo []byte) {
	start := time.Now()
	pr := peerFrom(in.p.connContext(ctx, c))
	return in.relayTCP(ctx, c, pr, "", nil, start, silent)
}

// firstSpeaker waits, for at most idle, for the first bytes of either side
// of a stream whose client has been silent: the app's banner (a
// server-first protocol), or the client's first bytes. Both are returned
// when both came; the caller owns the bytes.
func firstSpeaker(down, up net.Conn, idle time.Duration) (client, banner []byte, err error) {
	type result struct {
		b   []byte
		err error
	}
	read := func(c net.Conn, ch chan<- result) {
		buf := make([]byte, 4096)
		n, err := c.Read(buf)
		ch <- result{buf[:n], err}
	}
	deadline := time.Now().Add(idle)
	down.SetReadDeadline(deadline)
	up.SetReadDeadline(deadline)
	defer down.SetReadDeadline(time.Time{})
	defer up.SetReadDeadline(time.Time{})
	fromClient, fromApp := make(chan result, 1), make(chan result, 1)
	go read(down, fromClient)
	go read(up, fromApp)
	var cr, ar result
	select {
	case cr = <-fromClient:
		up.SetReadDeadline(time.Now()) // stop waiting for the app
		ar = <-fromApp
	case ar = <-fromApp:
		down.SetReadDeadline(time.Now())
		cr = <-fromClient
	}
	if len(ar.b) > 0 || len(cr.b) > 0 {
		return cr.b, ar.b, nil
	}
	if cr.err != nil {
		return nil, nil, cr.err
	}
	return nil, nil, ar.err
}
