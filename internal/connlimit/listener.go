package connlimit

import (
	"errors"
	"net"
	"sync"
)

// Refusal reasons, the values of the refusals metric's "reason" label.
const (
	ReasonPerSource = "per_source"
	ReasonTotal     = "total"
)

// Config bounds a Listener. Both bounds are required: a limiter that
// silently limits nothing would fail open.
type Config struct {
	// PerSource is the most connections open at once from one source (see
	// SourceOf). It must be positive.
	PerSource int
	// Total is the most connections open at once in all. It must be
	// positive; keep it below the process's open-file limit (see
	// DefaultTotal) with room for everything else the process opens.
	Total int
	// Name is the listener's "listener" label in Metrics.
	Name string
	// Metrics counts refusals and open connections; nil counts nothing.
	Metrics *Metrics
}

// Validate reports bounds a Listener cannot enforce.
func (c Config) Validate() error {
	if c.PerSource <= 0 || c.Total <= 0 {
		return errors.New("connlimit: PerSource and Total must be positive")
	}
	return nil
}

// Listener is a net.Listener that refuses connections over its bounds by
// closing them as soon as they are accepted. Accept returns only admitted
// connections; a connection's slot is freed when it is closed (the first
// Close; later ones are no-ops). It is safe for concurrent use.
type Listener struct {
	net.Listener
	cfg Config

	mu       sync.Mutex
	open     int
	bySource map[string]int
}

// NewListener wraps inner. It fails on a Config that does not Validate.
func NewListener(inner net.Listener, cfg Config) (*Listener, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Listener{Listener: inner, cfg: cfg, bySource: map[string]int{}}, nil
}

// Accept waits for the next connection within the bounds. Connections over
// a bound are closed (with a TCP reset, so neither side keeps state) and
// counted, and Accept goes on waiting. Errors are the inner listener's.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		src := SourceOf(c.RemoteAddr())
		if reason := l.admit(src); reason != "" {
			l.cfg.Metrics.refused(l.cfg.Name, reason)
			refuse(c)
			continue
		}
		l.cfg.Metrics.opened(l.cfg.Name, 1)
		return &conn{Conn: c, l: l, src: src}, nil
	}
}

// Open returns how many admitted connections are open.
func (l *Listener) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

// admit takes a slot for src, or returns why it cannot.
func (l *Listener) admit(src string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open >= l.cfg.Total {
		return ReasonTotal
	}
	if l.bySource[src] >= l.cfg.PerSource {
		return ReasonPerSource
	}
	l.open++
	l.bySource[src]++
	return ""
}

func (l *Listener) release(src string) {
	l.mu.Lock()
	l.open--
	if n := l.bySource[src] - 1; n > 0 {
		l.bySource[src] = n
	} else {
		delete(l.bySource, src)
	}
	l.mu.Unlock()
	l.cfg.Metrics.opened(l.cfg.Name, -1)
}

// refuse closes c at once. A TCP connection is reset (linger 0) rather
// than shut down: a flood of refusals then leaves no TIME_WAIT state here,
// and the client learns at once that it was refused.
func refuse(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// conn frees its Listener slot on its first Close.
type conn struct {
	net.Conn
	l    *Listener
	src  string
	once sync.Once
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.src) })
	return err
}

// NetConn returns the accepted connection, as tls.Conn's NetConn does.
func (c *conn) NetConn() net.Conn { return c.Conn }

// SourceOf is the source a connection from addr counts against: its IP
// address, IPv4-mapped IPv6 as IPv4, and an IPv6 address's /64 prefix,
// since one host usually holds a whole /64 and could otherwise open
// PerSource connections from each of its addresses. Any other kind of
// address (a unix socket's) counts as one source.
func SourceOf(addr net.Addr) string {
	var ip net.IP
	switch a := addr.(type) {
	case *net.TCPAddr:
		ip = a.IP
	case *net.UDPAddr:
		ip = a.IP
	default:
		if addr == nil {
			return ""
		}
		return addr.Network()
	}
	if v4 := ip.To4(); v4 != nil {
		return v4.String()
	}
	if len(ip) == net.IPv6len {
		return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
	}
	return ip.String()
}

var _ net.Listener = (*Listener)(nil)
