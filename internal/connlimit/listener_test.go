package connlimit_test

import (
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/zmesh/zmesh/internal/connlimit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// server accepts from a bounded listener and greets every admitted
// connection with one byte, so a client can tell admitted (it reads the
// byte) from refused (it reads EOF or a reset) without waiting on a timer.
type server struct {
	lis *connlimit.Listener

	mu      sync.Mutex
	conns   []net.Conn
	done    chan struct{}
	readers sync.WaitGroup // one per admitted connection, until its client closes
}

func serve(t *testing.T, cfg connlimit.Config) *server {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lis, err := connlimit.NewListener(inner, cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := &server{lis: lis, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			_, _ = c.Write([]byte{'k'})
			s.readers.Go(func() {
				_, _ = io.Copy(io.Discard, c)
				c.Close()
			})
		}
	}()
	t.Cleanup(func() {
		lis.Close()
		<-s.done
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.readers.Wait()
	})
	return s
}

// closeServerSide closes the server's end of the i-th admitted connection.
func (s *server) closeServerSide(i int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conns[i].Close()
}

// dial connects from source (an address in 127.0.0.0/8) and reports whether
// the server admitted the connection. Admitted connections stay open until
// the test ends.
func dial(t *testing.T, s *server, source string) bool {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(source)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", s.lis.Addr().String())
	if errors.Is(err, syscall.ECONNRESET) {
		return false // the reset came before connect returned (loopback is fast)
	}
	if err != nil {
		t.Fatalf("dial from %s: %v", source, err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var b [1]byte
	_, err = io.ReadFull(c, b[:])
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection from %s neither admitted nor refused within 10s", source)
	}
	return err == nil
}

func TestListenerBoundsPerSource(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := connlimit.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	s := serve(t, connlimit.Config{PerSource: 3, Total: 100, Name: "test", Metrics: m})
	for i := range 3 {
		if !dial(t, s, "127.0.0.2") {
			t.Fatalf("connection %d from 127.0.0.2 refused under the bound", i+1)
		}
	}
	for range 5 {
		if dial(t, s, "127.0.0.2") {
			t.Fatal("a 4th connection from 127.0.0.2 was admitted")
		}
	}
	if !dial(t, s, "127.0.0.3") {
		t.Fatal("another source was refused")
	}
	if got := s.lis.Open(); got != 4 {
		t.Errorf("Open = %d, want 4", got)
	}
	// Closing an admitted connection frees its source's slot.
	s.closeServerSide(0)
	if !dial(t, s, "127.0.0.2") {
		t.Fatal("127.0.0.2 still refused after one of its connections closed")
	}
	if got := value(m.RefusedCounter("test", connlimit.ReasonPerSource)); got != 5 {
		t.Errorf("per_source refusals = %v, want 5", got)
	}
	if got := value(m.OpenGauge("test")); got != 4 {
		t.Errorf("open gauge = %v, want 4", got)
	}
}

func TestListenerBoundsTotal(t *testing.T) {
	m, _ := connlimit.NewMetrics(nil)
	s := serve(t, connlimit.Config{PerSource: 10, Total: 4, Name: "t", Metrics: m})
	for i := range 4 {
		if !dial(t, s, "127.0.0."+string(rune('2'+i))) {
			t.Fatalf("connection %d refused under the total", i+1)
		}
	}
	if dial(t, s, "127.0.0.9") {
		t.Fatal("a 5th connection was admitted over the total")
	}
	if got := value(m.RefusedCounter("t", connlimit.ReasonTotal)); got != 1 {
		t.Errorf("total refusals = %v, want 1", got)
	}
}

// TestListenerCloseTwice: a connection closed twice (TLS and gRPC both
// close what they wrap) frees one slot, not two.
func TestListenerCloseTwice(t *testing.T) {
	s := serve(t, connlimit.Config{PerSource: 2, Total: 2})
	for range 2 {
		if !dial(t, s, "127.0.0.2") {
			t.Fatal("refused under the bound")
		}
	}
	s.mu.Lock()
	c := s.conns[0]
	s.mu.Unlock()
	c.Close()
	c.Close()
	if got := s.lis.Open(); got != 1 {
		t.Fatalf("Open = %d after closing one connection twice, want 1", got)
	}
	if !dial(t, s, "127.0.0.2") {
		t.Fatal("refused with a slot free")
	}
	if dial(t, s, "127.0.0.2") {
		t.Fatal("admitted over the bound: a double close freed two slots")
	}
}

// TestListenerConcurrent opens and closes connections from many goroutines
// (run with -race) and checks every slot is given back.
func TestListenerConcurrent(t *testing.T) {
	s := serve(t, connlimit.Config{PerSource: 8, Total: 16})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			src := &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(g%3+1))}
			for range 25 {
				c, err := (&net.Dialer{LocalAddr: src}).Dial("tcp", s.lis.Addr().String())
				if errors.Is(err, syscall.ECONNRESET) {
					continue // refused: over a bound
				}
				if err != nil {
					t.Error(err)
					return
				}
				var b [1]byte
				_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
				_, _ = c.Read(b[:])
				c.Close()
			}
		})
	}
	wg.Wait()
	// The server closes its end of each once the client has closed. The
	// listener is closed first so that no reader starts during Wait.
	s.lis.Close()
	<-s.done
	s.readers.Wait()
	s.mu.Lock()
	admitted := len(s.conns)
	s.mu.Unlock()
	if admitted < 16 {
		t.Errorf("%d connections admitted, want at least 16 (slots must be reused)", admitted)
	}
	if got := s.lis.Open(); got != 0 {
		t.Fatalf("Open = %d after every connection closed, want 0", got)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, cfg := range []connlimit.Config{{}, {PerSource: 1}, {Total: 1}, {PerSource: -1, Total: 5}} {
		if _, err := connlimit.NewListener(nil, cfg); err == nil {
			t.Errorf("NewListener(%+v) succeeded; a missing bound must be an error, not unlimited", cfg)
		}
	}
}

func TestSourceOf(t *testing.T) {
	tests := []struct {
		name string
		addr net.Addr
		want string
	}{
		{name: "IPv4", addr: &net.TCPAddr{IP: net.ParseIP("10.1.2.3"), Port: 5}, want: "10.1.2.3"},
		{name: "IPv4-mapped IPv6 is IPv4", addr: &net.TCPAddr{IP: net.ParseIP("::ffff:10.1.2.3")}, want: "10.1.2.3"},
		{name: "IPv6 counts by /64", addr: &net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:aaaa::1")}, want: "2001:db8:1:2::/64"},
		{name: "same /64, same source", addr: &net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:ffff::9")}, want: "2001:db8:1:2::/64"},
		{name: "unix socket", addr: &net.UnixAddr{Name: "@", Net: "unix"}, want: "unix"},
		{name: "nil", addr: nil, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := connlimit.SourceOf(tt.addr); got != tt.want {
				t.Errorf("SourceOf(%v) = %q, want %q", tt.addr, got, tt.want)
			}
		})
	}
}

func TestTotalFor(t *testing.T) {
	for nofile, want := range map[uint64]int{1024: 768, 20000: 15000, 1 << 20: 16384, 1: 1} {
		if got := connlimit.TotalFor(nofile); got != want {
			t.Errorf("TotalFor(%d) = %d, want %d", nofile, got, want)
		}
	}
	if got := connlimit.DefaultTotal(); got < 1 || got > 16384 {
		t.Errorf("DefaultTotal = %d", got)
	}
}

// value reads a counter or gauge.
func value(c prometheus.Metric) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}
