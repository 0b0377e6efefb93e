package http1

import (
	"bufio"
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/zmesh/zmesh/internal/rawtcp"
)

// conn is one connection to the upstream with the buffers that go with
// it. It is used by one exchange at a time: the goroutine in RoundTrip,
// then the response body's reader, then the pool.
type conn struct {
	t      *Transport
	nc     net.Conn
	raw    syscall.RawConn // for live; nil if nc has none
	br     *bufio.Reader   // reads through conn.Read
	bw     *bufio.Writer   // writes through conn.Write
	idleAt time.Time       // when it went into the pool
	reused bool            // it has carried an exchange before
	uses   int             // exchanges begun on it (MaxRequestsPerConn)

	// Counters of the exchange in progress, to tell whether the app sent
	// anything before a failure and whether we did.
	nread, nwritten int64
	ioErr           error // the last error of the network connection
	limit           int64 // bytes Read may still return (header bound)

	abortFn func()                // abort as a func value, made once
	peekFn  func(fd uintptr) bool // see live; made once
	peekOK  bool
	peekBuf [1]byte

	closed atomic.Bool // the network connection has been closed
}

var (
	readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4<<10) }}
	writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}
)

// dial opens a new connection to the upstream. reserved says the caller
// has counted it as open already (reserve); the stale-connection retry,
// which replaces a connection just closed, has not.
func (t *Transport) dial(ctx context.Context, reserved bool) (*conn, error) {
	if !reserved {
		t.open.Add(1)
	}
	var nc net.Conn
	var err error
	if t.dialFn != nil {
		nc, err = t.dialFn(ctx)
	} else {
		nc, err = t.dialer.DialContext(ctx, "tcp", t.addr)
		if err == nil {
			nc = rawtcp.Wrap(nc)
		}
	}
	if err != nil {
		t.open.Add(-1)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	c := &conn{t: t, nc: nc}
	c.raw = rawConn(nc)
	c.getBuffers()
	c.abortFn = c.abort
	return c, nil
}

// getBuffers gives the connection its reader and writer from the pools:
// a connection holds them only while an exchange uses it, not idle in
// the pool (see putBuffers).
func (c *conn) getBuffers() {
	c.br = readers.Get().(*bufio.Reader)
	c.br.Reset(c)
	c.bw = writers.Get().(*bufio.Writer)
	c.bw.Reset(c)
}

// putBuffers returns the connection's reader and writer to the pools.
// The reader must hold nothing unread, the writer nothing unsent.
func (c *conn) putBuffers() {
	if c.br != nil {
		c.br.Reset(nil)
		readers.Put(c.br)
		c.bw.Reset(nil)
		writers.Put(c.bw)
		c.br, c.bw = nil, nil
	}
}

// rawConn returns the socket under nc for live's peek, or nil. Under TLS
// it is the TCP connection: any record waiting there (a close_notify, an
// alert) means the connection is not idle and clean.
func rawConn(nc net.Conn) syscall.RawConn {
	if u, ok := nc.(interface{ NetConn() net.Conn }); ok {
		nc = u.NetConn()
	}
	if sc, ok := nc.(syscall.Conn); ok {
		raw, _ := sc.SyscallConn()
		return raw
	}
	return nil
}

// Read reads from the network connection, within limit.
func (c *conn) Read(p []byte) (int, error) {
	if c.limit <= 0 {
		return 0, errHeaderLimit
	}
	if int64(len(p)) > c.limit {
		p = p[:c.limit]
	}
	n, err := c.nc.Read(p)
	c.nread += int64(n)
	c.limit -= int64(n)
	if err != nil {
		c.ioErr = err
	}
	return n, err
}

var errHeaderLimit = errors.New("http1: header limit reached")

// Write writes to the network connection.
func (c *conn) Write(p []byte) (int, error) {
	n, err := c.nc.Write(p)
	c.nwritten += int64(n)
	if err != nil {
		c.ioErr = err
	}
	return n, err
}

// abort makes the connection's blocked and future reads and writes fail
// at once: a request's context has ended. The connection is not reused.
func (c *conn) abort() {
	c.nc.SetDeadline(aLongTimeAgo)
}

var aLongTimeAgo = time.Unix(1, 0)

// release ends an exchange whose response has been read in full: the
// connection goes back to the pool if keep says the exchange allows it,
// the context's AfterFunc (stop) had not fired, and the app sent nothing
// beyond the response; else it is closed.
func (c *conn) release(stop func() bool, keep bool) {
	if stop != nil && !stop() {
		keep = false
	}
	if keep && c.br.Buffered() == 0 && c.bw.Buffered() == 0 {
		c.putBuffers()
		c.t.put(c)
		return
	}
	c.close()
}

// close closes the connection and recycles its buffers. Only its owner
// may call it; see closeNet.
func (c *conn) close() {
	c.closeNet()
	c.putBuffers()
}

// closeNet closes the connection but keeps its buffers, which a
// concurrent Read may still be using.
func (c *conn) closeNet() {
	if c.closed.CompareAndSwap(false, true) {
		c.nc.Close()
		c.t.open.Add(-1)
	}
}
