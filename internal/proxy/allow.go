package proxy

import (
	"log/slog"
	"net"
	"net/netip"
)

// allowListener accepts connections only from loopback and from the
// networks in allow; any other is closed before a byte is read. It guards
// the admin listener where that must sit on an address others can reach
// (Config.AdminAllow).
type allowListener struct {
	net.Listener
	allow []netip.Prefix
	log   *slog.Logger
}

func (l *allowListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if allowed(c.RemoteAddr(), l.allow) {
			return c, nil
		}
		l.log.Warn("admin connection refused: its source is not allowed", "remote", c.RemoteAddr().String())
		c.Close()
	}
}

// allowed reports whether a connection from addr may use the admin
// listener: from loopback, or from one of allow.
func allowed(addr net.Addr, allow []netip.Prefix) bool {
	ap, err := netip.ParseAddrPort(addr.String())
	if err != nil {
		return false
	}
	ip := ap.Addr().Unmap()
	if ip.IsLoopback() {
		return true
	}
	for _, p := range allow {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
