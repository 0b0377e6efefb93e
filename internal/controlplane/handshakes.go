package controlplane

import (
	"errors"
	"net"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc/credentials"
)

// boundedHandshakes lets at most cap(slots) TLS handshakes compute at once
// on the mesh port. When thousands of proxies reconnect together (a
// control plane restart), running every handshake at once splits the CPU
// between all of them until each takes longer than the handshake time-out
// and almost none completes; a few at a time, each finishes in a fraction
// of a millisecond and the queue drains.
//
// A connection takes a slot only once its ClientHello has arrived (its
// first byte read), so idle connections hold none, and gives it back when
// its handshake ends or after maxHold, whichever comes first, so a client
// that stalls in the middle of its handshake holds one only briefly. The
// wait for a slot counts toward the handshake time-out.
//
// The wait comes before the TLS handshake starts: in a reconnect wave
// thousands of connections wait at once, and one waiting inside crypto/tls's
// first read held its TLS state and an 8 KiB stack (5 KiB of it in use);
// waiting here, it holds one byte.
type boundedHandshakes struct {
	credentials.TransportCredentials
	slots   chan struct{}
	timeout time.Duration
}

// maxHold is the longest a handshake keeps its slot: the server's part of
// a handshake is well under a millisecond of CPU.
const maxHold = 100 * time.Millisecond

func newBoundedHandshakes(c credentials.TransportCredentials, n int, timeout time.Duration) *boundedHandshakes {
	return &boundedHandshakes{TransportCredentials: c, slots: make(chan struct{}, n), timeout: timeout}
}

var errHandshakeQueue = errors.New("controlplane: no TLS handshake slot within the handshake time-out")

// ServerHandshake waits for the connection's first byte and a slot, then
// runs the wrapped handshake.
func (b *boundedHandshakes) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	sc := &slotConn{Conn: conn, b: b}
	if err := sc.acquire(); err != nil {
		return nil, nil, err
	}
	out, info, err := b.TransportCredentials.ServerHandshake(sc)
	sc.release()
	if err != nil {
		return nil, nil, err
	}
	return out, info, nil
}

// Clone keeps the bound, shared with the original.
func (b *boundedHandshakes) Clone() credentials.TransportCredentials {
	return &boundedHandshakes{TransportCredentials: b.TransportCredentials.Clone(), slots: b.slots, timeout: b.timeout}
}

// slotConn is a connection that holds a slot of b from its first byte
// until release.
type slotConn struct {
	net.Conn
	b *boundedHandshakes

	first   [1]byte
	pending []byte // of first, not yet returned by Read

	mu    sync.Mutex
	held  bool
	timer *time.Timer
	freed bool
}

// Read returns the byte acquire read first, then reads the connection.
func (c *slotConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 && len(p) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// acquire reads the connection's first byte (within the connection's
// deadline, which gRPC sets to the handshake time-out) and then takes a
// slot, waiting at most the handshake time-out.
func (c *slotConn) acquire() error {
	var n int
	var err error
	for n == 0 && err == nil {
		n, err = c.Conn.Read(c.first[:])
	}
	if n == 0 {
		return err
	}
	c.pending = c.first[:n]
	t := time.NewTimer(c.b.timeout)
	defer t.Stop()
	select {
	case c.b.slots <- struct{}{}:
	case <-t.C:
		return errHandshakeQueue
	}
	c.mu.Lock()
	c.held = true
	c.timer = time.AfterFunc(maxHold, c.release)
	c.mu.Unlock()
	return nil
}

// SyscallConn exposes the socket, as the wrapped connection does, so that
// gRPC can still set TCP_USER_TIMEOUT for its keepalives.
func (c *slotConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.New("controlplane: connection has no socket")
	}
	return sc.SyscallConn()
}

// release gives the slot back, once.
func (c *slotConn) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.held || c.freed {
		return
	}
	c.freed = true
	c.timer.Stop()
	c.timer = nil // the connection outlives its handshake by hours
	<-c.b.slots
}

var (
	_ credentials.TransportCredentials = (*boundedHandshakes)(nil)
	_ syscall.Conn                     = (*slotConn)(nil)
)
