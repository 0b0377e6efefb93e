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
// A connection takes a slot only once its ClientHello has arrived (the
// first bytes read), so idle connections hold none, and gives it back when
// its handshake ends or after maxHold, whichever comes first, so a client
// that stalls in the middle of its handshake holds one only briefly. The
// wait for a slot counts toward the handshake time-out.
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

// ServerHandshake runs the wrapped handshake on a connection that takes a
// slot at its first read.
func (b *boundedHandshakes) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	sc := &slotConn{Conn: conn, b: b}
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

// slotConn takes a slot of b before its first read returns.
type slotConn struct {
	net.Conn
	b *boundedHandshakes

	once  sync.Once // the slot is taken (or refused) once
	held  bool
	err   error
	mu    sync.Mutex
	timer *time.Timer
	freed bool
}

func (c *slotConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.once.Do(c.acquire)
		if c.err != nil {
			return 0, c.err
		}
	}
	return n, err
}

func (c *slotConn) acquire() {
	t := time.NewTimer(c.b.timeout)
	defer t.Stop()
	select {
	case c.b.slots <- struct{}{}:
	case <-t.C:
		c.err = errHandshakeQueue
		return
	}
	c.mu.Lock()
	c.held = true
	c.timer = time.AfterFunc(maxHold, c.release)
	c.mu.Unlock()
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
