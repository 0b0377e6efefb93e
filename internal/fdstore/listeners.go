package fdstore

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"
)

// Listeners is the child's side: the listeners it was given, and the
// store it sends what it binds to. Its methods are safe for concurrent
// use.
type Listeners struct {
	log *slog.Logger

	mu sync.Mutex
	// inherited are the descriptors given, by name, as raw descriptors
	// until one is taken: one that is no listener is never wrapped in an
	// *os.File, whose finalizer would close it.
	inherited map[string]int
	store     *net.UnixConn // nil without a store
}

// Open reads what this process was given from its environment, then
// removes the variables from it. Without any, Listen is net.Listen. The
// descriptors it names are taken over: Open marks them close-on-exec.
func Open(log *slog.Logger) (*Listeners, error) {
	env, err := parseEnv(os.Getenv, os.Getpid())
	for _, v := range []string{EnvListenPID, EnvListenFDs, EnvListenNames, EnvStoreFD} {
		os.Unsetenv(v)
	}
	if err != nil {
		return nil, err
	}
	l := &Listeners{log: log, inherited: map[string]int{}}
	for i, name := range env.names {
		fd := firstFD + i
		syscall.CloseOnExec(fd)
		if _, dup := l.inherited[name]; dup {
			log.Warn("inherited listener's name given twice: only the first is used", "name", name, "fd", fd)
			continue
		}
		l.inherited[name] = fd
	}
	if env.store >= 0 {
		syscall.CloseOnExec(env.store)
		f := os.NewFile(uintptr(env.store), "fdstore")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			l.Close()
			return nil, fmt.Errorf("fdstore: store socket: %w", err)
		}
		uc, ok := c.(*net.UnixConn)
		if !ok {
			c.Close()
			l.Close()
			return nil, fmt.Errorf("fdstore: store descriptor %d is not a Unix socket", env.store)
		}
		l.store = uc
	}
	return l, nil
}

// Listen returns a TCP listener on addr named name: the inherited one of
// that name when it is a listening TCP socket bound to addr, else a new
// one. Either way it is sent to the store, if there is one, so that the
// next process gets it. A nil *Listeners is net.Listen.
func (l *Listeners) Listen(name, addr string) (net.Listener, error) {
	if l == nil {
		return net.Listen("tcp", addr)
	}
	if err := ValidName(name); err != nil {
		return nil, err
	}
	ln, was := l.take(name, addr)
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", addr); err != nil {
			if was != nil {
				return nil, fmt.Errorf("%w (the inherited listener %q is bound to %s, not there)", err, name, was)
			}
			return nil, err
		}
	} else {
		l.log.Info("listener inherited from the previous process", "listener", name, "addr", ln.Addr().String())
	}
	if err := l.save(name, ln); err != nil {
		// The listener serves all the same; only the next restart
		// loses what is queued meanwhile.
		l.log.Warn("listener not handed to the supervisor: a restart will refuse connections", "listener", name, "err", err)
	}
	return ln, nil
}

// Release says that the listener name is closed for good (a gateway's
// port its configuration no longer has): the store lets its copy go, so
// that connections to it are refused rather than kept waiting for a
// process that will not serve them. An inherited listener of that name
// not taken is closed.
func (l *Listeners) Release(name string) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.releaseLocked(name)
}

// ReleaseUnclaimed releases every inherited listener not taken: the
// previous process served ports this one does not.
func (l *Listeners) ReleaseUnclaimed() {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for name := range l.inherited {
		l.log.Info("inherited listener not served any more: released", "listener", name)
		l.releaseLocked(name)
	}
}

func (l *Listeners) releaseLocked(name string) {
	if fd, ok := l.inherited[name]; ok {
		if listeningTCP(fd) {
			syscall.Close(fd)
		}
		delete(l.inherited, name)
	}
	if l.store == nil || ValidName(name) != nil {
		return
	}
	// A name without a descriptor: forget it.
	if _, _, err := l.store.WriteMsgUnix([]byte(name), nil, nil); err != nil {
		l.log.Warn("listener release not sent to the supervisor", "listener", name, "err", err)
	}
}

// take returns the inherited listener name if it serves addr; else nil,
// and the address it is bound to when it was a listener elsewhere. A
// descriptor that is no listening TCP socket is left open and alone: it
// may be something else of this process's.
func (l *Listeners) take(name, addr string) (net.Listener, net.Addr) {
	l.mu.Lock()
	fd, ok := l.inherited[name]
	delete(l.inherited, name)
	l.mu.Unlock()
	if !ok {
		return nil, nil
	}
	if !listeningTCP(fd) {
		l.log.Warn("inherited descriptor is no listening TCP socket: not used", "listener", name, "fd", fd)
		return nil, nil
	}
	f := os.NewFile(uintptr(fd), "listener "+name)
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		l.log.Warn("inherited listener not usable", "listener", name, "err", err)
		return nil, nil
	}
	if !sameAddr(addr, ln.Addr()) {
		was := ln.Addr()
		ln.Close()
		l.log.Warn("inherited listener is bound elsewhere: binding anew", "listener", name, "bound", was.String(), "want", addr)
		return nil, was
	}
	return ln, nil
}

// save sends ln's descriptor to the store under name.
func (l *Listeners) save(name string, ln net.Listener) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.store == nil {
		return nil
	}
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return fmt.Errorf("%T has no descriptor", ln)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var sendErr error
	if err := raw.Control(func(fd uintptr) {
		_, _, sendErr = l.store.WriteMsgUnix([]byte(name), syscall.UnixRights(int(fd)), nil)
	}); err != nil {
		return err
	}
	return sendErr
}

// Close closes the inherited listeners not taken (those that are
// listeners) and the store socket. The listeners Listen returned are the
// caller's.
func (l *Listeners) Close() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var errs []error
	for name, fd := range l.inherited {
		if listeningTCP(fd) {
			errs = append(errs, syscall.Close(fd))
		}
		delete(l.inherited, name)
	}
	if l.store != nil {
		errs = append(errs, l.store.Close())
		l.store = nil
	}
	return errors.Join(errs...)
}

// listeningTCP reports whether fd is a listening stream socket of the
// IPv4 or IPv6 family.
func listeningTCP(fd int) bool {
	acc, err := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_ACCEPTCONN)
	if err != nil || acc != 1 {
		return false
	}
	typ, err := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_TYPE)
	if err != nil || typ != syscall.SOCK_STREAM {
		return false
	}
	dom, err := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_DOMAIN)
	return err == nil && (dom == syscall.AF_INET || dom == syscall.AF_INET6)
}
