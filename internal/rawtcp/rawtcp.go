// Package rawtcp serves a TCP connection's reads and writes with raw,
// non-blocking system calls, for the proxies' busiest sockets.
//
// Why: the Go runtime's monitor thread (sysmon) sleeps for good once
// every P is idle, and the next system call made through syscall.Syscall
// wakes it; after such a wake it polls every 20 µs until the process is
// idle again. A proxy at a thousand requests a second goes idle and busy
// twice per request, so each request paid for a futex wake-up and about
// three sleeps of that thread: on a small virtual machine, where every
// context switch is dear, that was a fifth of a proxy's CPU per request
// (docs/benchmarks.md). A socket here is non-blocking, so its read(2) and
// write(2) never block; made with syscall.RawSyscall they do not count as
// entering a system call, and the monitor stays asleep while the proxy
// only moves bytes. Anything that may block (a file write, a DNS lookup)
// still goes through the runtime and wakes it as before.
//
// Readiness, deadlines and Close are the net package's: the calls run
// inside syscall.RawConn's Read and Write, which wait in the network
// poller whenever the socket would block.
//
// What the monitor does is delayed while it sleeps, until the next timer
// or system call through the runtime wakes it: preempting a goroutine
// that runs for long (the other P keeps serving, and stealing work), and
// polling the network when every P stays busy (each P polls it whenever
// it runs out of work). A proxy's handlers are short and block often.
package rawtcp

import "net"

// Listener wraps the connections a TCP listener accepts (Wrap).
type Listener struct {
	net.Listener
}

// Accept accepts a connection and wraps it.
func (l Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return Wrap(c), nil
}
