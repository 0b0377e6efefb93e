package http1

import "syscall"

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
			_, _, err := syscall.Recvfrom(int(fd), c.peekBuf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			c.peekOK = err == syscall.EAGAIN || err == syscall.EINTR
			return true
		}
	}
	if err := c.raw.Read(c.peekFn); err != nil {
		return false
	}
	return c.peekOK
}
