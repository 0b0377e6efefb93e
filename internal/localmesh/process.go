package localmesh

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/zmesh/zmesh/internal/fdstore"
)

// process is one child that the mesh keeps running: if it exits while the
// mesh is up, it is started again after a short, growing delay.
type process struct {
	name string // e.g. "api/backend proxy"
	argv []string
	env  []string
	logs io.Writer // child stdout and stderr, each line prefixed with name
	log  *slog.Logger
	// before, if set, runs before each start; when it returns an error
	// the process is not started, and supervise returns if its context
	// has ended, else tries again after its backoff.
	before func(context.Context) error
	// store, if set, keeps the child's listeners open across its
	// restarts (fdstore): a proxy's callers wait while it restarts
	// instead of being refused.
	store *fdstore.Store

	mu  sync.Mutex
	cmd *exec.Cmd
}

// dropListenersAfter is the restart delay from which a crash-looping
// process's listeners are no longer kept (fdstore): the fourth quick exit
// in a row, about two seconds after the first.
const dropListenersAfter = time.Second

// supervise runs p until ctx is done, restarting it when it dies. On
// cancellation it asks the child to stop (SIGTERM) and kills it if it has
// not exited after grace.
func (p *process) supervise(ctx context.Context, grace time.Duration) {
	if p.store != nil {
		defer p.store.Close()
	}
	const firstBackoff, maxBackoff = 200 * time.Millisecond, 5 * time.Second
	backoff := firstBackoff
	for {
		started := time.Now()
		err := p.runOnce(ctx, grace)
		if ctx.Err() != nil {
			return
		}
		if time.Since(started) > 10*time.Second {
			// It ran for a while: a crash, not a crash loop.
			backoff = firstBackoff
		}
		p.log.Warn("process exited; restarting", "process", p.name, "err", errString(err), "after", backoff)
		if p.store != nil && backoff >= dropListenersAfter {
			// A crash loop: callers waiting in the listeners' queues
			// would wait for nothing; refused, they go elsewhere.
			if names := p.store.Names(); len(names) > 0 {
				p.store.Drop()
				p.log.Warn("process restarting in a loop: its listeners are released until it runs again", "process", p.name, "listeners", names)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

func (p *process) runOnce(ctx context.Context, grace time.Duration) error {
	if p.before != nil {
		if err := p.before(ctx); err != nil {
			return err
		}
	}
	cmd := exec.Command(p.argv[0], p.argv[1:]...)
	cmd.Env = append(fdstore.WithoutEnv(os.Environ()), p.env...)
	var handover *fdstore.Start
	if p.store != nil {
		var err error
		if handover, err = p.store.Prepare(); err != nil {
			p.log.Warn("listeners not kept across this start", "process", p.name, "err", err)
		} else {
			cmd.ExtraFiles = handover.Files
			cmd.Env = append(cmd.Env, handover.Env...)
		}
	}
	// Own process group: a Ctrl-C on the terminal reaches only `zmesh up`,
	// which then stops the children in order. Pdeathsig makes sure no child
	// outlives a `zmesh up` that was killed outright.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out := newPrefixWriter(p.logs, "["+p.name+"] ")
	cmd.Stdout, cmd.Stderr = out, out
	err := cmd.Start()
	if handover != nil {
		handover.Started()
		defer awaitHandover(handover)
	}
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.cmd = cmd
	p.mu.Unlock()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		out.Flush()
		return err
	case <-ctx.Done():
		// Stopping for good: the listeners close with the child, so that
		// callers are refused and move on rather than wait.
		if p.store != nil {
			p.store.Close()
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			out.Flush()
			return err
		case <-time.After(grace):
			_ = cmd.Process.Kill()
			err := <-done
			out.Flush()
			return err
		}
	}
}

// awaitHandover waits, after the child exited, until everything it sent
// to the store is held, so that the next start gets it; a process the
// child started may keep the store socket open, hence the bound.
func awaitHandover(h *fdstore.Start) {
	select {
	case <-h.Done():
	case <-time.After(time.Second):
		h.Abandon()
	}
}

func errString(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// prefixWriter writes whole lines to w, each with a prefix, so that the
// logs of several children interleave line by line, never mid-line.
type prefixWriter struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
	buf    []byte
}

func newPrefixWriter(w io.Writer, prefix string) *prefixWriter {
	return &prefixWriter{w: w, prefix: prefix}
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			break
		}
		p.emit(p.buf[:i+1])
		p.buf = p.buf[i+1:]
	}
	if len(p.buf) > 64<<10 { // a child that never ends its line
		p.emit(append(p.buf, '\n'))
		p.buf = p.buf[:0]
	}
	return len(b), nil
}

// Flush writes a trailing partial line, if any.
func (p *prefixWriter) Flush() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.buf) > 0 {
		p.emit(append(p.buf, '\n'))
		p.buf = p.buf[:0]
	}
}

func (p *prefixWriter) emit(line []byte) {
	bw := bufio.NewWriterSize(p.w, len(p.prefix)+len(line))
	_, _ = bw.WriteString(p.prefix)
	_, _ = bw.Write(line)
	_ = bw.Flush()
}
