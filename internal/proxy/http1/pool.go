package http1

import "time"

// The idle pool is a stack: take returns the connection used last, so a
// light load keeps few connections warm and the rest age out. A timer
// (sweep) closes connections idle past IdleTimeout even when no request
// comes; it is armed only while the pool holds connections, and started
// again only when one arrives after the pool was empty, never per request.

// take returns the most recently idle connection, or nil. Connections
// idle for IdleTimeout or longer are closed instead.
func (t *Transport) take() *conn {
	now := t.now()
	t.mu.Lock()
	n := len(t.idle)
	if n == 0 {
		t.mu.Unlock()
		return nil
	}
	c := t.idle[n-1]
	t.idle[n-1] = nil
	t.idle = t.idle[:n-1]
	if now.Sub(c.idleAt) < t.idleTimeout {
		t.mu.Unlock()
		return c
	}
	// The newest is too old, so are the others.
	stale := t.idle
	t.idle = nil
	t.mu.Unlock()
	c.close()
	for _, s := range stale {
		s.close()
	}
	return nil
}

// put returns c to the pool, or closes it if the pool is full.
func (t *Transport) put(c *conn) {
	c.idleAt = t.now()
	c.reused = true
	t.mu.Lock()
	if len(t.idle) >= t.maxIdle {
		t.mu.Unlock()
		c.close()
		return
	}
	t.idle = append(t.idle, c)
	if !t.armed {
		t.armed = true
		if t.sweep == nil {
			t.sweep = time.AfterFunc(t.idleTimeout, t.sweepIdle)
		} else {
			t.sweep.Reset(t.idleTimeout)
		}
	}
	t.mu.Unlock()
}

// sweepIdle closes the connections idle for IdleTimeout or longer and
// arms the timer for the oldest of the others.
func (t *Transport) sweepIdle() {
	now := t.now()
	t.mu.Lock()
	if !t.armed {
		t.mu.Unlock()
		return // stopped by CloseIdleConnections while firing
	}
	k := 0
	for k < len(t.idle) && now.Sub(t.idle[k].idleAt) >= t.idleTimeout {
		k++
	}
	stale := make([]*conn, k)
	copy(stale, t.idle[:k])
	n := copy(t.idle, t.idle[k:])
	clear(t.idle[n:])
	t.idle = t.idle[:n]
	if n > 0 {
		t.sweep.Reset(max(t.idle[0].idleAt.Add(t.idleTimeout).Sub(now), time.Millisecond))
	} else {
		t.armed = false
	}
	t.mu.Unlock()
	for _, c := range stale {
		c.close()
	}
}
