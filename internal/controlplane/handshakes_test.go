package controlplane

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/credentials"
)

// handshakeServer accepts on loopback and runs each connection's server
// handshake through b, reporting the time each successful one took.
func handshakeServer(t *testing.T, b credentials.TransportCredentials) (addr string, done <-chan time.Duration) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ok := make(chan time.Duration, 100)
	var wg sync.WaitGroup
	t.Cleanup(func() { lis.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				start := time.Now()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				if _, _, err := b.ServerHandshake(c); err == nil {
					ok <- time.Since(start)
				}
			})
		}
	})
	return lis.Addr().String(), ok
}

func selfSigned(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), DNSNames: []string{"cp"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS13}
}

// TestIdleAndStalledConnectionsDoNotHoldHandshakeSlots: with one slot,
// ten connections that never send a byte and one that sends a
// ClientHello and then stalls do not keep a real client from completing
// its handshake.
func TestIdleAndStalledConnectionsDoNotHoldHandshakeSlots(t *testing.T) {
	b := newBoundedHandshakes(credentials.NewTLS(selfSigned(t)), 1, 3*time.Second)
	addr, done := handshakeServer(t, b)
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for range 10 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	// A client that sends its ClientHello and never its Finished: the
	// server computes its flight, then waits on it holding a slot.
	stalled, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	held = append(held, stalled)
	go func() {
		// The handshake writes a ClientHello and then blocks reading
		// what never completes; closing the conn at cleanup ends it.
		_ = tls.Client(&noFinished{Conn: stalled}, &tls.Config{InsecureSkipVerify: true}).Handshake()
	}()

	start := time.Now()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatalf("handshake with idle and stalled connections around: %v", err)
	}
	c.Close()
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("handshake took %s", took)
	}
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Error("the server never completed a handshake")
	}
}

// noFinished is a connection whose writes after the first (the
// ClientHello) are dropped, so the handshake never finishes.
type noFinished struct {
	net.Conn
	writes int
}

func (c *noFinished) Write(p []byte) (int, error) {
	c.writes++
	if c.writes > 1 {
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// TestHandshakesQueueForSlots: forty clients at once through two slots
// all complete.
func TestHandshakesQueueForSlots(t *testing.T) {
	b := newBoundedHandshakes(credentials.NewTLS(selfSigned(t)), 2, 5*time.Second)
	addr, done := handshakeServer(t, b)
	var wg sync.WaitGroup
	for range 40 {
		wg.Go(func() {
			c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13, NextProtos: []string{"h2"}})
			if err != nil {
				t.Error(err)
				return
			}
			c.Close()
		})
	}
	wg.Wait()
	for i := range 40 {
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("%d of 40 server handshakes completed", i)
		}
	}
	if n := len(b.slots); n != 0 {
		t.Errorf("%d slots still held after every handshake ended", n)
	}
}

// countingCreds counts the server handshakes it starts.
type countingCreds struct {
	credentials.TransportCredentials
	started atomic.Int32
}

func (c *countingCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	c.started.Add(1)
	return c.TransportCredentials.ServerHandshake(conn)
}

// TestWaitingConnectionsStartNoTLSHandshake: a connection whose
// ClientHello has arrived while every slot is taken waits before its TLS
// handshake starts (it holds no TLS state meanwhile), and completes it once
// a slot frees.
func TestWaitingConnectionsStartNoTLSHandshake(t *testing.T) {
	inner := &countingCreds{TransportCredentials: credentials.NewTLS(selfSigned(t))}
	b := newBoundedHandshakes(inner, 1, 5*time.Second)
	addr, done := handshakeServer(t, b)
	b.slots <- struct{}{} // the only slot, taken
	dialed := make(chan error, 1)
	go func() {
		c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13, NextProtos: []string{"h2"}})
		if err == nil {
			c.Close()
		}
		dialed <- err
	}()
	time.Sleep(300 * time.Millisecond) // the ClientHello has arrived
	if n := inner.started.Load(); n != 0 {
		t.Fatalf("%d TLS handshakes started while every slot was taken", n)
	}
	<-b.slots
	if err := <-dialed; err != nil {
		t.Fatalf("handshake after a slot freed: %v", err)
	}
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Error("the server never completed the handshake")
	}
	if n := inner.started.Load(); n != 1 {
		t.Errorf("%d TLS handshakes started, want 1", n)
	}
}
