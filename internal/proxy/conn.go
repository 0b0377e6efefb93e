package proxy

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"net"
	"net/netip"
	"sync"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/zmesh/zmesh/internal/identity"
)

// recordTypeHandshake is the first byte of every TLS connection (a
// handshake record carrying the ClientHello). No HTTP/1 request line
// starts with it.
const recordTypeHandshake = 0x16

// peer is what the inbound side knows of the other end of a connection,
// computed once per connection.
type peer struct {
	mtls      bool
	id        spiffeid.ID
	principal string // Istio form, "" when plaintext
	uri       string // the SPIFFE ID, "" when plaintext
	namespace string // from the principal
	ip        netip.Addr
	local     netip.AddrPort
	sni       string
	xfcc      string // X-Forwarded-Client-Cert value to set, "" when plaintext
	// appAddr and appPort are where the connection goes: the app's
	// address, or with capture the app's port the caller connected to
	// (Istio's inbound passthrough); appPort is what PeerAuthentication
	// and authorization see.
	appAddr string
	appPort uint32
}

type peerKey struct{}

// peerFrom returns the connection's peer stored by connContext.
func peerFrom(ctx context.Context) *peer {
	p, _ := ctx.Value(peerKey{}).(*peer)
	return p
}

// connContext is the inbound HTTP server's ConnContext: it reads the
// verified peer identity of the connection once, for every request on it.
func (p *Proxy) connContext(ctx context.Context, c net.Conn) context.Context {
	pr := &peer{}
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		pr.ip = ap.Addr().Unmap()
	}
	if ap, err := netip.ParseAddrPort(c.LocalAddr().String()); err == nil {
		pr.local = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	under := c
	if tc, ok := c.(*tls.Conn); ok {
		under = tc.NetConn()
	}
	var dst netip.AddrPort
	if rc, ok := under.(*replayConn); ok {
		dst = rc.dst
	}
	pr.appAddr, pr.appPort = p.appTarget(dst)
	if tc, ok := c.(*tls.Conn); ok {
		p.setPeerTLS(pr, tc.ConnectionState())
	}
	return context.WithValue(ctx, peerKey{}, pr)
}

// setPeerTLS records in pr the SNI and the SPIFFE identity of a
// connection whose handshake verified the peer's chain against the
// mesh's bundle and trust domains; here the ID is only read back.
func (p *Proxy) setPeerTLS(pr *peer, cs tls.ConnectionState) {
	pr.sni = cs.ServerName
	if len(cs.PeerCertificates) == 0 {
		return
	}
	leaf := cs.PeerCertificates[0]
	if id, err := x509svid.IDFromCert(leaf); err == nil {
		pr.mtls = true
		pr.id = id
		pr.principal = identity.Principal(id)
		pr.uri = id.String()
		if ns, _, err := identity.ServiceAccountOf(id); err == nil {
			pr.namespace = ns
		}
		sum := sha256.Sum256(leaf.Raw)
		pr.xfcc = "By=" + p.selfStr + ";Hash=" + hex.EncodeToString(sum[:]) + ";URI=" + id.String()
	}
}

// connListener is a net.Listener fed by the inbound accept loop with
// connections whose protocol has been detected (and whose TLS handshake
// is done), so that one server (httpServer) serves them all.
type connListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newConnListener(addr net.Addr) *connListener {
	return &connListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// push hands c to the server; it closes c and reports false when the
// listener is closed.
func (l *connListener) push(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		c.Close()
		return false
	}
}

func (l *connListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *connListener) Addr() net.Addr { return l.addr }
