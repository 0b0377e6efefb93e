package proxy

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"

	"github.com/zmesh/zmesh/internal/proxy/http1"
	vroute "github.com/zmesh/zmesh/internal/route"
	"github.com/zmesh/zmesh/internal/telemetry"
)

// mirrors sends fire-and-forget copies of requests. Each copy runs in a
// goroutine it owns, at most maxMirrorsInFlight at once; close cancels
// those in flight and waits for them.
type mirrors struct {
	ctx    context.Context
	cancel context.CancelFunc
	slots  chan struct{}
	wg     sync.WaitGroup
	mu     sync.Mutex
	closed bool
}

func newMirrors() *mirrors {
	ctx, cancel := context.WithCancel(context.Background())
	return &mirrors{ctx: ctx, cancel: cancel, slots: make(chan struct{}, maxMirrorsInFlight)}
}

// goSend runs send in a goroutine unless every slot is taken or m is
// closed; it reports whether it did.
func (m *mirrors) goSend(send func(ctx context.Context)) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false
	}
	select {
	case m.slots <- struct{}{}:
	default:
		return false
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer func() { <-m.slots }()
		ctx, cancel := context.WithTimeout(m.ctx, mirrorTimeout)
		defer cancel()
		send(ctx)
	}()
	return true
}

func (m *mirrors) close() {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	m.cancel()
	m.wg.Wait()
}

// mirror sends a copy of r (as the destination would get it) to dst, its
// Host suffixed with -shadow as Envoy does, and discards the answer. The
// caller's request neither waits for it nor sees its outcome. A request
// whose body cannot be replayed is not mirrored. port is the service
// port the request was addressed to (a destination may name its own).
func (o *outbound) mirror(st *state, r *http.Request, port uint32, body []byte, replay bool, dst *vroute.Destination) {
	if !replay || http1.IsUpgrade(r) {
		return
	}
	svc := st.routes.lookup(dst.Host)
	if svc == nil {
		return
	}
	if dst.Port != 0 {
		port = dst.Port
	}
	ep, _ := svc.pickAt(dst.Subset, port)
	if ep == nil || ep.refuse != "" {
		return
	}
	mr := r.Clone(context.Background())
	mr.Host = shadowHost(r.Host)
	mr.Body = http.NoBody
	if len(body) > 0 {
		mr.Body = io.NopCloser(bytes.NewReader(body))
	}
	mr.RequestURI = ""
	for h := range hopHeaders { // the others Connection named went on arrival
		delete(mr.Header, h)
	}
	dst.Headers.Request.Apply(mr.Header)
	var ignored telemetry.RequestLabels
	mr, _, _ = o.toEndpoint(mr, ep, &ignored)
	sent := o.mirrors.goSend(func(ctx context.Context) {
		resp, err := o.RoundTrip(mr.WithContext(ctx))
		if err != nil {
			o.p.log.Debug("mirror failed", "upstream", ep.addr, "err", err)
			return
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
	})
	if !sent {
		o.p.log.Debug("mirror dropped: too many in flight", "host", mr.Host)
	}
}

// shadowHost is host with -shadow appended to its name, port kept.
func shadowHost(host string) string {
	if h, p, err := net.SplitHostPort(host); err == nil {
		return net.JoinHostPort(h+"-shadow", p)
	}
	return strings.TrimSuffix(host, ".") + "-shadow"
}
