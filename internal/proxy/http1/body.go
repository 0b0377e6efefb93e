package http1

import (
	"context"
	"errors"
	"io"
	"sync"
)

// body is a response body that owns its connection until the exchange
// ends: at EOF the connection goes back to the pool (if the exchange
// allows), on an error or an early Close it is closed.
type body struct {
	rc   io.ReadCloser // from http.ReadResponse, reading c.br
	ctx  context.Context
	stop func() bool // stops the context's AfterFunc; nil if none
	keep bool        // the exchange allows reuse

	mu  sync.Mutex
	c   *conn // nil once the exchange has ended
	err error // what Read returns once it has
}

var errBodyClosed = errors.New("http1: read on closed response body")

func (b *body) Read(p []byte) (int, error) {
	b.mu.Lock()
	ended := b.c == nil
	err := b.err
	b.mu.Unlock()
	if ended {
		return 0, err
	}
	n, err := b.rc.Read(p)
	if err == nil {
		return n, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.c
	if c == nil {
		return n, b.err // closed while reading
	}
	b.c = nil
	if err == io.EOF {
		b.err = io.EOF
		c.release(b.stop, b.keep)
		return n, io.EOF
	}
	if b.stop != nil {
		b.stop()
	}
	c.close()
	if b.ctx.Err() != nil {
		err = b.ctx.Err()
	}
	b.err = err
	return n, err
}

// Close ends the exchange. Before EOF that closes the connection, which
// also ends a Read in progress in another goroutine.
func (b *body) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.c
	b.c = nil
	b.err = errBodyClosed
	if c == nil {
		return nil
	}
	if b.stop != nil {
		b.stop()
	}
	c.closeNet() // a concurrent Read may still hold its buffers
	return nil
}

// upgraded is the body of a 101 Switching Protocols response: the
// connection itself, read through its buffer (which may already hold the
// first bytes of the new protocol) and written directly. Close closes the
// connection; the request context's end still aborts it (stop is called
// on Close).
type upgraded struct {
	c    *conn
	stop func() bool // stops the context's AfterFunc; nil if none
	once sync.Once
}

func (u *upgraded) Read(p []byte) (int, error)  { return u.c.br.Read(p) }
func (u *upgraded) Write(p []byte) (int, error) { return u.c.Write(p) }

func (u *upgraded) Close() error {
	u.once.Do(func() {
		if u.stop != nil {
			u.stop()
		}
		u.c.closeNet() // a concurrent Read may still hold the buffers
	})
	return nil
}
