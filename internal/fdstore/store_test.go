package fdstore

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain runs the test binary as a supervised child when asked to: it
// listens through Listeners and answers each connection's line with its
// pid, until its stdin closes.
func TestMain(m *testing.M) {
	if addr := os.Getenv("FDSTORE_TEST_CHILD"); addr != "" {
		os.Exit(child(addr))
	}
	os.Exit(m.Run())
}

func child(addr string) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	l, err := Open(log)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ln, err := l.Listen("web", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	l.Close()
	if os.Getenv(EnvListenFDs) != "" || os.Getenv(EnvStoreFD) != "" {
		fmt.Fprintln(os.Stderr, "variables left in the environment")
		return 1
	}
	fmt.Printf("addr %s\n", ln.Addr())
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if _, err := bufio.NewReader(c).ReadString('\n'); err == nil {
					fmt.Fprintf(c, "pid %d\n", os.Getpid())
				}
			}()
		}
	}()
	io.Copy(io.Discard, os.Stdin)
	return 0
}

type testChild struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	start *Start
	addr  string
}

func startChild(t *testing.T, s *Store, addr string) *testChild {
	t.Helper()
	st, err := s.Prepare()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), "FDSTORE_TEST_CHILD="+addr), st.Env...)
	cmd.ExtraFiles = st.Files
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	err = cmd.Start()
	st.Started()
	if err != nil {
		t.Fatal(err)
	}
	c := &testChild{cmd: cmd, stdin: stdin, start: st}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	c.addr = strings.TrimSpace(strings.TrimPrefix(line, "addr "))
	return c
}

// ask sends a line on a connection made earlier and returns the answer.
func ask(t *testing.T, c net.Conn) string {
	t.Helper()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, "hello\n"); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	return strings.TrimSpace(line)
}

// A connection made while no process runs waits for the next one, which
// answers it on the same port; once the store is closed and the last
// process gone, connections are refused again.
func TestRestartKeepsTheListener(t *testing.T) {
	s := NewStore(slog.New(slog.DiscardHandler))
	first := startChild(t, s, "127.0.0.1:0")
	c1, err := net.Dial("tcp", first.addr)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ask(t, c1), fmt.Sprintf("pid %d", first.cmd.Process.Pid); got != want {
		t.Fatalf("first process answered %q, want %q", got, want)
	}

	// A crash: the process cannot hand anything over now.
	first.cmd.Process.Kill()
	first.cmd.Wait()
	<-first.start.Done()
	if got := s.Names(); !slices.Equal(got, []string{"web"}) {
		t.Fatalf("store holds %q, want [web]", got)
	}
	waiting, err := net.DialTimeout("tcp", first.addr, 5*time.Second)
	if err != nil {
		t.Fatalf("connect while no process runs: %v (refused: the listener was not kept)", err)
	}
	io.WriteString(waiting, "hello\n")

	second := startChild(t, s, "127.0.0.1:0")
	if second.addr != first.addr {
		t.Fatalf("second process listens on %s, want the inherited %s", second.addr, first.addr)
	}
	line, err := bufio.NewReader(waiting).ReadString('\n')
	if err != nil {
		t.Fatalf("the connection made in between got no answer: %v", err)
	}
	if want := fmt.Sprintf("pid %d", second.cmd.Process.Pid); strings.TrimSpace(line) != want {
		t.Fatalf("queued connection answered %q, want %q", line, want)
	}

	// Stopped for good: the store lets go first, then the process.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	second.stdin.Close()
	if err := second.cmd.Wait(); err != nil {
		t.Fatalf("second process: %v", err)
	}
	if c, err := net.Dial("tcp", first.addr); err == nil {
		c.Close()
		t.Fatal("connect succeeded after the store and the process closed the listener")
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("connect: %v, want connection refused", err)
	}
}

// storeAndChildEnd returns a store prepared for a start, that start, and
// the child's end of its store socket, held by the test in place of a
// child.
func storeAndChildEnd(t *testing.T) (*Store, *Start, *net.UnixConn) {
	t.Helper()
	s := NewStore(slog.New(slog.DiscardHandler))
	t.Cleanup(func() { s.Close() })
	st, err := s.Prepare()
	if err != nil {
		t.Fatal(err)
	}
	fc, err := net.FileConn(st.Files[len(st.Files)-1])
	if err != nil {
		t.Fatal(err)
	}
	st.Started()
	return s, st, fc.(*net.UnixConn)
}

// The store keeps only listening TCP sockets sent with a valid name.
func TestStoreRefusesWhatIsNoListener(t *testing.T) {
	s, st, conn := storeAndChildEnd(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	send := func(name string, c syscall.Conn) {
		raw, _ := c.SyscallConn()
		raw.Control(func(fd uintptr) {
			if _, _, err := conn.WriteMsgUnix([]byte(name), syscall.UnixRights(int(fd)), nil); err != nil {
				t.Fatal(err)
			}
		})
	}
	send("bad:name", ln.(*net.TCPListener))
	send("udp", udp.(*net.UDPConn))
	if _, _, err := conn.WriteMsgUnix([]byte("nofd"), nil, nil); err != nil { // a release of what is not held
		t.Fatal(err)
	}
	send("web", ln.(*net.TCPListener))
	send("web", ln.(*net.TCPListener)) // replaces, not adds
	send("gateway-8443", ln.(*net.TCPListener))
	send("gateway-9443", ln.(*net.TCPListener))
	if _, _, err := conn.WriteMsgUnix([]byte("gateway-8443"), nil, nil); err != nil { // released
		t.Fatal(err)
	}
	conn.Close()
	<-st.Done()
	if got := s.Names(); !slices.Equal(got, []string{"web", "gateway-9443"}) {
		t.Fatalf("store holds %q, want [web gateway-9443]", got)
	}
}

// An inherited listener is used only where it is bound to the address
// asked for; one bound elsewhere is closed and the address bound anew,
// and a descriptor that is no listener is left alone.
func TestListenUsesOnlyAMatchingInheritedListener(t *testing.T) {
	inherit := func(t *testing.T, ln net.Listener) *Listeners {
		f, err := ln.(*net.TCPListener).File()
		if err != nil {
			t.Fatal(err)
		}
		ln.Close()
		fd, err := syscall.Dup(int(f.Fd()))
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		return &Listeners{log: slog.New(slog.DiscardHandler), inherited: map[string]int{"web": fd}}
	}
	t.Run("same address: the same socket", func(t *testing.T) {
		old, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := old.Addr().String()
		l := inherit(t, old)
		c, err := net.Dial("tcp", addr) // queued before anyone accepts
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ln, err := l.Listen("web", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		ln.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second))
		a, err := ln.Accept()
		if err != nil {
			t.Fatalf("the queued connection is not on the inherited listener: %v", err)
		}
		a.Close()
	})
	t.Run("another address: bound anew", func(t *testing.T) {
		old, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		oldAddr := old.Addr().String()
		l := inherit(t, old)
		ln, err := l.Listen("web", "127.0.0.2:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		if !strings.HasPrefix(ln.Addr().String(), "127.0.0.2:") {
			t.Fatalf("listening on %s, want 127.0.0.2", ln.Addr())
		}
		if c, err := net.Dial("tcp", oldAddr); err == nil {
			c.Close()
			t.Fatal("the inherited listener bound elsewhere is still open")
		}
	})
	t.Run("no listener: left alone", func(t *testing.T) {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		defer w.Close()
		l := &Listeners{log: slog.New(slog.DiscardHandler), inherited: map[string]int{"web": int(r.Fd())}}
		ln, err := l.Listen("web", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln.Close()
		l.Close()
		runtime.GC()
		if _, err := w.Write([]byte("x")); err != nil {
			t.Fatalf("the pipe was closed: %v", err)
		}
		b := make([]byte, 1)
		if _, err := r.Read(b); err != nil {
			t.Fatalf("the pipe's read end was closed: %v", err)
		}
	})
}

// What a process inherited and does not serve any more (a gateway port
// its configuration dropped) is released: closed here and dropped by
// the store, so that connections to it are refused, not kept waiting.
func TestReleaseUnclaimed(t *testing.T) {
	s, st, conn := storeAndChildEnd(t)
	inherited := map[string]int{}
	addrs := map[string]string{}
	for _, name := range []string{"inbound", "gateway-8443"} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		f, _ := ln.(*net.TCPListener).File()
		fd, _ := syscall.Dup(int(f.Fd()))
		f.Close()
		ln.Close()
		inherited[name], addrs[name] = fd, ln.Addr().String()
	}
	l := &Listeners{log: slog.New(slog.DiscardHandler), inherited: inherited, store: conn}
	ln, err := l.Listen("inbound", addrs["inbound"])
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	l.ReleaseUnclaimed()
	l.Close()
	<-st.Done()
	if got := s.Names(); !slices.Equal(got, []string{"inbound"}) {
		t.Fatalf("store holds %q, want [inbound]", got)
	}
	if c, err := net.Dial("tcp", addrs["gateway-8443"]); err == nil {
		c.Close()
		t.Fatal("the released listener still accepts connections")
	}
	c, err := net.Dial("tcp", addrs["inbound"])
	if err != nil {
		t.Fatalf("the listener taken was closed: %v", err)
	}
	c.Close()
}

// Starts leak no descriptor: each start's copies and store socket are
// closed once the child is done with them, and Close closes what is held.
func TestStartsLeakNoDescriptor(t *testing.T) {
	count := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skip("no /proc/self/fd")
		}
		return len(ents)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	before := count()
	s := NewStore(slog.New(slog.DiscardHandler))
	for i := range 20 {
		st, err := s.Prepare()
		if err != nil {
			t.Fatal(err)
		}
		if want := min(i, 1) + 1; len(st.Files) != want {
			t.Fatalf("start %d gets %d files, want %d", i, len(st.Files), want)
		}
		fc, err := net.FileConn(st.Files[len(st.Files)-1]) // the child's end, as a child would hold it
		if err != nil {
			t.Fatal(err)
		}
		st.Started()
		raw, _ := ln.(*net.TCPListener).SyscallConn()
		raw.Control(func(fd uintptr) {
			fc.(*net.UnixConn).WriteMsgUnix([]byte("web"), syscall.UnixRights(int(fd)), nil)
		})
		fc.Close() // the child exits
		<-st.Done()
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if after := count(); after != before {
		t.Errorf("%d descriptors open after 20 starts and Close, %d before", after, before)
	}
}
