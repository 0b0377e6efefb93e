package http1

import (
	"syscall"
	"unsafe"
)

// live reports whether an idle connection still looks usable: the app
// has not closed it (nor sent anything unasked) while it was in the pool.
// It costs one non-blocking recv. A request that cannot be retried is
// only sent on a connection that passed; the race with a close that
// crosses the request remains, as with http.Transport.
func (c *conn) live() bool {
	if c.raw == nil {
		return true
	}
	if c.peekFn == nil {
		c.peekFn = func(fd uintptr) bool {
			// A raw recvfrom(2), as rawtcp reads: with MSG_DONTWAIT it
			// cannot block, and so does not wake the runtime's monitor
			// thread on every reuse of a pooled connection (package rawtcp).
			_, _, errno := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&c.peekBuf[0])), 1, syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
			c.peekOK = errno == syscall.EAGAIN || errno == syscall.EINTR
			return true
		}
	}
	if err := c.raw.Read(c.peekFn); err != nil {
		return false
	}
	return c.peekOK
}
