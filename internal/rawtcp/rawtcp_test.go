//go:build linux

package rawtcp_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/zmesh/zmesh/internal/rawtcp"
)

// pair returns the two ends of a loopback TCP connection, both wrapped.
func pair(t testing.TB) (client, server *rawtcp.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	wl := rawtcp.Listener{Listener: ln}
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := wl.Accept()
		if err != nil {
			t.Error(err)
		}
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	if s == nil {
		t.FailNow()
	}
	client, ok := rawtcp.Wrap(c).(*rawtcp.Conn)
	if !ok {
		t.Fatalf("Wrap(%T) is not a *rawtcp.Conn", c)
	}
	server, ok = s.(*rawtcp.Conn)
	if !ok {
		t.Fatalf("Listener accepted a %T, not a *rawtcp.Conn", s)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// TestLargeTransfer sends more than the sockets' buffers hold, so that
// Write must wait for room and Read for data, both ways at once.
func TestLargeTransfer(t *testing.T) {
	client, server := pair(t)
	want := make([]byte, 16<<20)
	rand.Read(want)
	var wg sync.WaitGroup
	var got [2][]byte
	for i, c := range []*rawtcp.Conn{client, server} {
		wg.Add(2)
		go func() {
			defer wg.Done()
			n, err := c.Write(want)
			if n != len(want) || err != nil {
				t.Errorf("Write = %d, %v; want %d, nil", n, err, len(want))
			}
			if err := c.CloseWrite(); err != nil {
				t.Error(err)
			}
		}()
		go func() {
			defer wg.Done()
			b, err := io.ReadAll(c)
			if err != nil {
				t.Error(err)
			}
			got[i] = b
		}()
	}
	wg.Wait()
	for i := range got {
		if !bytes.Equal(got[i], want) {
			t.Errorf("end %d read %d bytes, not the %d sent", i, len(got[i]), len(want))
		}
	}
}

func TestReadEOFAndEmpty(t *testing.T) {
	client, server := pair(t)
	if n, err := server.Read(nil); n != 0 || err != nil {
		t.Errorf("Read(nil) = %d, %v; want 0, nil", n, err)
	}
	if n, err := client.Write(nil); n != 0 || err != nil {
		t.Errorf("Write(nil) = %d, %v; want 0, nil", n, err)
	}
	client.Write([]byte("hi"))
	client.CloseWrite()
	buf := make([]byte, 8)
	n, err := io.ReadFull(server, buf[:2])
	if n != 2 || err != nil || string(buf[:2]) != "hi" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
	if n, err := server.Read(buf); n != 0 || err != io.EOF {
		t.Errorf("Read after the peer's CloseWrite = %d, %v; want 0, io.EOF", n, err)
	}
}

func TestReadDeadline(t *testing.T) {
	_, server := pair(t)
	server.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	start := time.Now()
	_, err := server.Read(make([]byte, 8))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read = %v; want a deadline error", err)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("Read's error %v is not a net.Error timeout", err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "read" || oe.Net != "tcp" || oe.Addr == nil {
		t.Errorf("Read's error = %#v; want a *net.OpError read tcp with the peer's address", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Read returned after %v", d)
	}
}

func TestCloseUnblocksRead(t *testing.T) {
	_, server := pair(t)
	done := make(chan error, 1)
	go func() {
		_, err := server.Read(make([]byte, 8))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	server.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Read after Close = %v; want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read still blocked 5 s after Close")
	}
	if _, err := server.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after Close = %v; want net.ErrClosed", err)
	}
}

// TestWriteToReset: the peer is gone with a reset; Write fails with the
// system's error, wrapped as the net package wraps it.
func TestWriteToReset(t *testing.T) {
	client, server := pair(t)
	client.SetLinger(0)
	client.Close()
	buf := make([]byte, 64<<10)
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		_, err = server.Write(buf)
		time.Sleep(time.Millisecond)
	}
	var se *os.SyscallError
	if !errors.As(err, &se) || !(errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)) {
		t.Fatalf("Write to a reset connection = %v; want ECONNRESET or EPIPE as *os.SyscallError", err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "write" {
		t.Errorf("Write's error = %#v; want a *net.OpError write", err)
	}
}

func TestWrapLeavesOthers(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if got := rawtcp.Wrap(a); got != a {
		t.Errorf("Wrap(pipe) = %T; want the pipe unchanged", got)
	}
}

// TestCopyBetweenConns goes through ReadFrom, which hands the TCP
// connections to the net package's own copy.
func TestCopyBetweenConns(t *testing.T) {
	c1, s1 := pair(t)
	c2, s2 := pair(t)
	want := make([]byte, 4<<20)
	rand.Read(want)
	go func() {
		c1.Write(want)
		c1.CloseWrite()
	}()
	go func() {
		io.Copy(c2, s1) // s1 → c2
		c2.CloseWrite()
	}()
	got, err := io.ReadAll(s2)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("copied %d bytes (%v); want the %d sent", len(got), err, len(want))
	}
}
