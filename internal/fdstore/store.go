package fdstore

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"syscall"
)

// Store is the supervisor's side: the listeners of one supervised
// process, kept across its restarts. Its methods are safe for concurrent
// use.
type Store struct {
	log *slog.Logger

	mu    sync.Mutex
	names []string // in the order first received: each start gets the same
	// fds are the listeners held, as raw descriptors: an *os.File would
	// put each in this process's poller, which would then wake at every
	// connection the child accepts.
	fds    map[string]int
	closed bool
}

// NewStore returns an empty store.
func NewStore(log *slog.Logger) *Store {
	return &Store{log: log, fds: map[string]int{}}
}

// Start is one start of the process: what to give it, and the store
// socket it sends its listeners back on.
type Start struct {
	// Files go to the child's exec.Cmd.ExtraFiles (descriptors 3 on) and
	// Env is appended to its environment.
	Files []*os.File
	Env   []string

	s    *Store
	conn *net.UnixConn // the store socket's end kept here
	done chan struct{} // closed when receive returns
}

// Prepare returns what the next start of the process gets: copies of the
// listeners held and a new store socket. Once the child is started (or
// failed to start), call Started.
func (s *Store) Prepare() (*Start, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("fdstore: store socket: %w", err)
	}
	ours := os.NewFile(uintptr(fds[0]), "fdstore")
	c, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		syscall.Close(fds[1])
		return nil, fmt.Errorf("fdstore: store socket: %w", err)
	}
	st := &Start{s: s, conn: c.(*net.UnixConn), done: make(chan struct{})}
	s.mu.Lock()
	var names []string
	for _, name := range s.names {
		// A copy: the child's start must not depend on what this store
		// closes or replaces meanwhile.
		fd, err := fcntlDupCloexec(s.fds[name])
		if err != nil {
			s.log.Warn("held listener not copied: the next process binds it anew", "listener", name, "err", err)
			continue
		}
		names = append(names, name)
		st.Files = append(st.Files, os.NewFile(uintptr(fd), "listener "+name))
	}
	s.mu.Unlock()
	st.Files = append(st.Files, os.NewFile(uintptr(fds[1]), "fdstore child"))
	st.Env = listenEnv(names)
	return st, nil
}

// Started closes the child's copies here and receives what the child
// sends until it exits (or the store is closed).
func (st *Start) Started() {
	for _, f := range st.Files {
		f.Close()
	}
	go st.receive()
}

// Done is closed once everything the child sent is held: after it
// exited (its end of the store socket closed with it), or Abandon.
func (st *Start) Done() <-chan struct{} { return st.done }

// Abandon stops receiving from a child that has exited but whose end of
// the store socket is still open somewhere (a process it started); what
// was received so far stays held.
func (st *Start) Abandon() { st.conn.Close() }

// receive keeps each listener the child sends: a message is a name and
// one descriptor, or a name alone for a listener released. It returns when the child's end is closed.
func (st *Start) receive() {
	defer close(st.done)
	defer st.conn.Close()
	buf := make([]byte, maxName+1)
	oob := make([]byte, syscall.CmsgSpace(4))
	for {
		n, oobn, _, _, err := st.conn.ReadMsgUnix(buf, oob)
		if err != nil {
			return
		}
		if n == 0 && oobn == 0 {
			return // the child closed its end
		}
		fds := receivedFDs(oob[:oobn])
		name := string(buf[:n])
		if len(fds) == 0 && ValidName(name) == nil && n <= maxName {
			st.s.forget(name)
			continue
		}
		if len(fds) != 1 || ValidName(name) != nil || n > maxName {
			for _, fd := range fds {
				syscall.Close(fd)
			}
			st.s.log.Warn("fdstore: malformed message from the child ignored", "descriptors", len(fds), "nameBytes", n)
			continue
		}
		st.s.keep(name, fds[0])
	}
}

// receivedFDs returns the descriptors carried by a message's control
// data (received close-on-exec: ReadMsgUnix asks for it).
func receivedFDs(oob []byte) []int {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var out []int
	for i := range msgs {
		fds, err := syscall.ParseUnixRights(&msgs[i])
		if err == nil {
			out = append(out, fds...)
		}
	}
	return out
}

// keep holds fd as listener name, replacing what was held under that
// name; a descriptor that is no listening TCP socket is refused.
func (s *Store) keep(name string, fd int) {
	if !listeningTCP(fd) {
		syscall.Close(fd)
		s.log.Warn("fdstore: descriptor refused: not a listening TCP socket", "listener", name)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old, had := s.fds[name]
	switch {
	case s.closed:
		syscall.Close(fd)
		return
	case !had && len(s.names) >= MaxListeners:
		syscall.Close(fd)
		s.log.Warn("fdstore: listener refused: the store is full", "listener", name, "max", MaxListeners)
		return
	case had:
		syscall.Close(old)
	default:
		s.names = append(s.names, name)
	}
	s.fds[name] = fd
}

// forget closes and drops the listener name, if held.
func (s *Store) forget(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fd, ok := s.fds[name]
	if !ok {
		return
	}
	syscall.Close(fd)
	delete(s.fds, name)
	s.names = slices.DeleteFunc(s.names, func(n string) bool { return n == name })
}

// Names returns the names of the listeners held, in the order the next
// start gets them.
func (s *Store) Names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.names...)
}

// Drop closes every listener held and keeps the store open: the next
// process binds its listeners anew and sends them again. A supervisor
// drops them when its child keeps failing, so that callers are refused
// and go elsewhere instead of waiting for a process that does not come.
func (s *Store) Drop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, name := range s.names {
		syscall.Close(s.fds[name])
	}
	s.names, s.fds = nil, map[string]int{}
}

// Close closes every listener held, so that connections are refused once
// the process has closed its own copies, and refuses what comes later.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	var errs []error
	for _, name := range s.names {
		errs = append(errs, syscall.Close(s.fds[name]))
	}
	s.names, s.fds = nil, map[string]int{}
	return errors.Join(errs...)
}

// fcntlDupCloexec is fcntl(fd, F_DUPFD_CLOEXEC, 0).
func fcntlDupCloexec(fd int) (int, error) {
	r, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_DUPFD_CLOEXEC, 0)
	if errno != 0 {
		return -1, errno
	}
	return int(r), nil
}
