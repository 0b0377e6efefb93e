//go:build linux

package rawtcp

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// maxRW caps one system call's length, as the net package does.
const maxRW = 1 << 30

// Conn is a *net.TCPConn whose Read and Write are raw system calls. Every
// other method (deadlines, CloseWrite, SyscallConn, keep-alive) is the
// TCP connection's own.
type Conn struct {
	*net.TCPConn
	raw syscall.RawConn

	rmu     sync.Mutex // one Read at a time owns rbuf, rn, rerr
	rbuf    []byte
	rn      int
	rerr    syscall.Errno
	readFn  func(uintptr) bool
	wmu     sync.Mutex // one Write at a time owns wbuf, wn, werr
	wbuf    []byte
	wn      int
	werr    syscall.Errno
	writeFn func(uintptr) bool
}

// Wrap returns c as a *Conn if it is a TCP connection, else c unchanged.
func Wrap(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	rc := &Conn{TCPConn: tc, raw: raw}
	rc.readFn = rc.read
	rc.writeFn = rc.write
	return rc
}

// Read reads as net.Conn's Read does: io.EOF once the peer has shut down
// its side, a *net.OpError otherwise.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if len(p) > maxRW {
		p = p[:maxRW]
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	c.rbuf, c.rn, c.rerr = p, 0, 0
	err := c.raw.Read(c.readFn)
	n, errno := c.rn, c.rerr
	c.rbuf = nil
	switch {
	case err != nil:
		return 0, c.opError("read", err)
	case errno != 0:
		return 0, c.opError("read", os.NewSyscallError("read", errno))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// read is RawConn.Read's callback: one read(2), or false to wait for the
// socket to become readable.
func (c *Conn) read(fd uintptr) bool {
	for {
		n, _, errno := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&c.rbuf[0])), uintptr(len(c.rbuf)))
		switch errno {
		case 0:
			c.rn = int(n)
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		c.rerr = errno
		return true
	}
}

// Write writes all of p, or returns how much it wrote and a *net.OpError.
func (c *Conn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf, c.wn, c.werr = p, 0, 0
	err := c.raw.Write(c.writeFn)
	n, errno := c.wn, c.werr
	c.wbuf = nil
	switch {
	case err != nil:
		return n, c.opError("write", err)
	case errno != 0:
		return n, c.opError("write", os.NewSyscallError("write", errno))
	}
	return n, nil
}

// write is RawConn.Write's callback: write(2) until all is written, an
// error, or false to wait for room in the socket's buffer.
func (c *Conn) write(fd uintptr) bool {
	for c.wn < len(c.wbuf) {
		rest := c.wbuf[c.wn:]
		if len(rest) > maxRW {
			rest = rest[:maxRW]
		}
		n, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&rest[0])), uintptr(len(rest)))
		switch errno {
		case 0:
			c.wn += int(n)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			c.werr = errno
			return true
		}
	}
	return true
}

// opError wraps err as the net package does for a failed Read or Write,
// so that callers' checks (net.ErrClosed, os.ErrDeadlineExceeded, a
// net.Error's Timeout, the message) see what a *net.TCPConn would give.
func (c *Conn) opError(op string, err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) { // RawConn's "raw-read" and "raw-write"
		err = oe.Err
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// ReadFrom copies from r with the TCP connection's own ReadFrom, which
// splices between two TCP sockets: a *Conn given as r is unwrapped so
// that it still can.
func (c *Conn) ReadFrom(r io.Reader) (int64, error) {
	if rc, ok := r.(*Conn); ok {
		r = rc.TCPConn
	}
	return c.TCPConn.ReadFrom(r)
}
