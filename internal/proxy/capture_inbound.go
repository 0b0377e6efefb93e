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
	for _, ln := range []net.Listener{p.outLn, p.adminLn} {
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
// time-out: its first bytes, when they come, must not be HTTP. It owns c.
func (in *inbound) servePlainTCP(ctx context.Context, c net.Conn, silent bool) {
	defer c.Close()
	start := time.Now()
	pr := peerFrom(in.p.connContext(ctx, c))
	var down net.Conn = c
	if silent {
		down = &httpGuard{Conn: c}
	}
	in.relayTCP(ctx, down, pr, "", nil, start)
}
