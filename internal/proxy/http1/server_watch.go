package http1

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// connReader is what a server connection's bufio.Reader reads from: the
// connection, with a byte budget while a request's headers are read
// (MaxHeaderBytes), and the watch for a client that goes away.
//
// The watch is a read in a goroutine of its own, started by the server's
// sweep only once a request has run for a sweep period with its body done
// (so the handler no longer reads the connection). It ends with an error (the client closed: the
// request's context is cancelled), with a byte (the client's next
// request, kept for the next read), or when stopWatch aborts it with a
// past read deadline once the handler has returned. Foreground reads never
// overlap it: the connection's goroutine stops the watch before it reads
// again.
type connReader struct {
	c net.Conn

	limited bool  // remain applies: a request's headers are being read
	remain  int64 // bytes that may still be read

	mu       sync.Mutex
	cond     sync.Cond
	seq      uint64 // counts the connection's requests
	seen     uint64 // seq at the last sweep, while a request was armed
	armed    bool   // the request's body is done: the watch may read
	started  bool   // the watch has started for this request
	stopped  bool   // the request has ended: no watch until the next
	inRead   bool   // the watch is in its read
	aborting bool   // stopWatch set a past deadline to end that read
	hasByte  bool   // the watch read a byte that the next Read returns
	b        [1]byte
	err      error              // the watch saw the client go: every Read fails
	cancel   context.CancelFunc // the request's context
}

func (r *connReader) init(c net.Conn) {
	r.c = c
	r.cond.L = &r.mu
}

// Read reads from the connection, the watch's byte first.
func (r *connReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r.mu.Lock()
	if r.hasByte {
		p[0] = r.b[0]
		r.hasByte = false
		r.mu.Unlock()
		return 1, nil
	}
	err := r.err
	r.mu.Unlock()
	if err != nil {
		return 0, err
	}
	if r.limited {
		if r.remain <= 0 {
			return 0, io.EOF
		}
		if int64(len(p)) > r.remain {
			p = p[:r.remain]
		}
	}
	n, err := r.c.Read(p)
	if r.limited {
		r.remain -= int64(n)
	}
	return n, err
}

// setLimit bounds the bytes Read returns from now on; n < 0 lifts it.
func (r *connReader) setLimit(n int64) {
	r.limited, r.remain = n >= 0, n
}

// hitLimit reports whether the budget of setLimit is spent.
func (r *connReader) hitLimit() bool { return r.limited && r.remain <= 0 }

// startRequest resets the watch for a new request whose context cancel
// cancels.
func (r *connReader) startRequest(cancel context.CancelFunc) {
	r.mu.Lock()
	r.seq++
	r.armed, r.started, r.stopped, r.cancel = false, false, false, cancel
	r.mu.Unlock()
}

// arm allows the watch for the current request, unless it has ended.
func (r *connReader) arm() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.stopped {
		r.armed = true
	}
}

// sweep is the server's look at the connection, once a period: it starts
// the watch of an armed request that was already armed at the last look.
func (r *connReader) sweep() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.armed || r.started {
		return
	}
	if r.seen != r.seq {
		r.seen = r.seq
		return
	}
	if r.hasByte || r.err != nil {
		return
	}
	// The deadline goes before the read starts (under mu, so that an
	// abort's past deadline cannot come first): the one in force may be
	// the idle or header one, which must not end the watch.
	r.c.SetReadDeadline(time.Time{})
	r.started, r.inRead = true, true
	go r.backgroundRead(r.cancel)
}

// backgroundRead is the watch's read.
func (r *connReader) backgroundRead(cancel context.CancelFunc) {
	n, err := r.c.Read(r.b[:])

	r.mu.Lock()
	defer r.mu.Unlock()
	r.inRead = false
	r.hasByte = n == 1
	var ne net.Error
	switch {
	case err == nil:
	case r.aborting && errors.As(err, &ne) && ne.Timeout():
	default:
		r.err = err
		cancel()
	}
	r.cond.Broadcast()
}

// stopWatch ends the current request's watch, aborting a read in progress
// and waiting for it, so that the connection's goroutine may read again.
// It reports whether the watch ran, which left the connection without a
// read deadline.
func (r *connReader) stopWatch() (ran bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopped, r.armed = true, false
	for r.inRead {
		r.aborting = true
		r.c.SetReadDeadline(aLongTimeAgo)
		r.cond.Wait()
	}
	if r.aborting {
		r.aborting = false
		r.c.SetReadDeadline(time.Time{})
	}
	return r.started
}

// cancelRequest cancels the current request's context, if one runs.
func (r *connReader) cancelRequest() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cancel != nil && !r.stopped {
		r.cancel()
	}
}

// clientGone reports whether the watch saw the client close.
func (r *connReader) clientGone() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err != nil
}
