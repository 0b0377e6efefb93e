package proxy

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"
)

// pipeClosed reports whether c's other end sees c closed.
func pipeClosed(other net.Conn) bool {
	other.SetReadDeadline(time.Now().Add(time.Second))
	_, err := other.Read(make([]byte, 1))
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

func TestStreamSet(t *testing.T) {
	var s streamSet
	if err := s.wait(context.Background()); err != nil {
		t.Fatalf("wait on an empty set = %v", err)
	}
	a, aPeer := net.Pipe()
	b, bPeer := net.Pipe()
	sa, sb := s.add(a), s.add()
	sb.attach(b)

	waited := make(chan error, 1)
	go func() { waited <- s.wait(context.Background()) }()
	sa.end()
	sa.end() // twice is harmless
	select {
	case err := <-waited:
		t.Fatalf("wait returned %v with a stream open", err)
	case <-time.After(50 * time.Millisecond):
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.wait(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("wait with an ended context = %v", err)
	}
	s.closeAll()
	if !pipeClosed(bPeer) {
		t.Error("closeAll left an open stream's connection open")
	}
	if pipeClosed(aPeer) {
		t.Error("closeAll closed the connection of a stream that had ended")
	}
	sb.end()
	if err := <-waited; err != nil {
		t.Errorf("wait after the last stream ended = %v", err)
	}

	// Once closed, the set refuses streams and closes what they bring.
	c, cPeer := net.Pipe()
	if st := s.add(c); st != nil {
		t.Error("add after closeAll returned a stream")
	}
	if !pipeClosed(cPeer) {
		t.Error("add after closeAll left its connection open")
	}
	a.Close()
}

// TestStreamAttachAfterClose: a hijack that completes after closeAll gets
// its connection closed rather than left out of the set.
func TestStreamAttachAfterClose(t *testing.T) {
	var s streamSet
	st := s.add()
	s.closeAll()
	c, peer := net.Pipe()
	st.attach(c)
	if !pipeClosed(peer) {
		t.Error("attach after closeAll left the connection open")
	}
	st.end()
	if err := s.wait(context.Background()); err != nil {
		t.Fatal(err)
	}
}
