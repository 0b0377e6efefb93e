package proxy

import (
	"net"
	"sync"
)

// gatedListener accepts nothing until open is closed: the inbound, tunnel
// and outbound listeners wait for the proxy's first configuration. Until
// then the kernel queues the connections and a caller's handshake waits,
// where accepting them would only close them again — with no
// configuration there is no policy to admit one by, no route to send one
// on. That matters after a restart above all: the listeners may be the
// previous process's (Config.Listen, fdstore), their queues already
// holding connections, which the new process serves once it is
// configured instead of refusing.
type gatedListener struct {
	net.Listener
	open   <-chan struct{}
	closed chan struct{}
	once   sync.Once
}

func gate(ln net.Listener, open <-chan struct{}) net.Listener {
	return &gatedListener{Listener: ln, open: open, closed: make(chan struct{})}
}

// Accept waits for the gate to open, then accepts; it returns
// net.ErrClosed once the listener is closed, waiting or not.
func (g *gatedListener) Accept() (net.Conn, error) {
	select {
	case <-g.open:
	case <-g.closed:
		return nil, net.ErrClosed
	}
	return g.Listener.Accept()
}

// Close closes the listener and ends an Accept waiting at the gate.
func (g *gatedListener) Close() error {
	g.once.Do(func() { close(g.closed) })
	return g.Listener.Close()
}
