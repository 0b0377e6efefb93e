package proxy

import (
	"context"
	"net"
	"sync"
)

// streamSet holds the connections of one side of the proxy that
// http.Server does not track, so that a drain can wait for them and close
// them when its time is up: CONNECT tunnels, captured and mesh TCP
// streams (from the moment they are accepted, detection included), and
// connections hijacked by a protocol upgrade (WebSocket). Shutdown
// tracks none of these: it forgets a connection once hijacked, and never
// sees one that is not HTTP.
//
// A stream is added before its connections are known when they come from
// a hijack, so that there is no moment at which a drain could see neither
// the HTTP connection nor the stream. The zero value is ready to use.
type streamSet struct {
	mu     sync.Mutex
	open   map[*stream]struct{}
	closed bool          // closeAll was called: streams are refused
	idle   chan struct{} // closed when the last open stream ends
}

// stream is one entry of a streamSet: a relay and the connections whose
// closing ends it.
type stream struct {
	set   *streamSet
	conns []net.Conn
}

// add registers a stream over conns and returns it; its owner calls end
// when it is over. After closeAll it closes conns and returns nil.
func (s *streamSet) add(conns ...net.Conn) *stream {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		for _, c := range conns {
			c.Close()
		}
		return nil
	}
	if s.open == nil {
		s.open = map[*stream]struct{}{}
	}
	if len(s.open) == 0 {
		s.idle = make(chan struct{})
	}
	st := &stream{set: s, conns: conns}
	s.open[st] = struct{}{}
	return st
}

// attach adds c to the stream, or closes it when the set has been closed
// since the stream was added.
func (st *stream) attach(c net.Conn) {
	s := st.set
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.Close()
		return
	}
	st.conns = append(st.conns, c)
}

// end takes the stream out of its set; it does not close its connections,
// which their owner does. It may be called more than once.
func (st *stream) end() {
	s := st.set
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.open[st]; !ok {
		return
	}
	delete(s.open, st)
	if len(s.open) == 0 {
		close(s.idle)
	}
}

// wait returns nil once no stream is open, or ctx's error if it ends
// first.
func (s *streamSet) wait(ctx context.Context) error {
	for {
		s.mu.Lock()
		if len(s.open) == 0 {
			s.mu.Unlock()
			return nil
		}
		idle := s.idle
		s.mu.Unlock()
		select {
		case <-idle:
			// Another stream may have opened since: look again.
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// closeAll closes the connections of every open stream and refuses new
// ones. The streams end as their owners see their connections close;
// wait for that with wait.
func (s *streamSet) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for st := range s.open {
		for _, c := range st.conns {
			c.Close()
		}
	}
}
