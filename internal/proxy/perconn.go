package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"

	"golang.org/x/net/http2"
)

// perConnH2 is the HTTP/2 side of a mesh target under a DestinationRule's
// maxRequestsPerConnection: each connection to an endpoint takes at most
// perConn streams, then takes no new one and closes once its streams have
// ended (drained), while the next request opens its successor. x/net's
// pool cannot count a connection's streams, so this one keeps, per
// endpoint, the connection that still takes new streams and its count.
// Connections are made with the target's HTTP/2 transport (its settings,
// idle time-out and health pings) and dialed as its own are.
type perConnH2 struct {
	t       *http2.Transport
	dial    func(ctx context.Context, addr string) (net.Conn, error)
	perConn int

	mu     sync.Mutex
	byAddr map[string]*perConnEndpoint
}

// perConnEndpoint is one endpoint's current connection. Its mutex is held
// while a successor is dialed, so that requests to that endpoint wait
// for one dial rather than each make its own; other endpoints' are not
// held up.
type perConnEndpoint struct {
	mu sync.Mutex
	cc *http2.ClientConn // nil: none yet, or the last one is spent
	n  int               // streams cc has been given
}

func newPerConnH2(t *http2.Transport, dial func(context.Context, string) (net.Conn, error), perConn int) *perConnH2 {
	return &perConnH2{t: t, dial: dial, perConn: perConn, byAddr: map[string]*perConnEndpoint{}}
}

// RoundTrip sends r on a connection to r.URL.Host that has carried fewer
// than perConn streams. The stream that spends a connection marks it not
// to be reused once the stream is under way, so that it drains and
// closes.
func (p *perConnH2) RoundTrip(r *http.Request) (*http.Response, error) {
	cc, last, err := p.get(r.Context(), r.URL.Host)
	if err != nil {
		closeRequestBody(r)
		return nil, err
	}
	resp, err := cc.RoundTrip(r)
	if !last {
		return resp, err
	}
	// Not before: a connection marked so takes no stream, not even the
	// one reserved on it.
	cc.SetDoNotReuse()
	if err != nil {
		closeIfIdle(cc)
		return nil, err
	}
	resp.Body = &spentBody{ReadCloser: resp.Body, cc: cc}
	return resp, nil
}

// spentBody is the response body of a connection's last stream: when it
// is closed, the connection is too if no stream is left on it. x/net
// closes a connection marked not to be reused when its last stream ends,
// but not one whose streams had all ended before it was marked.
type spentBody struct {
	io.ReadCloser
	cc *http2.ClientConn
}

func (b *spentBody) Close() error {
	err := b.ReadCloser.Close()
	closeIfIdle(b.cc)
	return err
}

// closeIfIdle closes cc when it carries no stream. For a connection that
// takes no new one, that state is final.
func closeIfIdle(cc *http2.ClientConn) {
	if s := cc.State(); s.StreamsActive == 0 && s.StreamsReserved == 0 && s.StreamsPending == 0 {
		cc.Close()
	}
}

// get returns a connection to addr with a stream reserved on it, and
// whether that stream is its last.
func (p *perConnH2) get(ctx context.Context, addr string) (_ *http2.ClientConn, last bool, _ error) {
	p.mu.Lock()
	e := p.byAddr[addr]
	if e == nil {
		e = &perConnEndpoint{}
		p.byAddr[addr] = e
	}
	p.mu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cc == nil || !e.cc.ReserveNewRequest() {
		if e.cc != nil {
			e.cc.SetDoNotReuse() // closing, or the server sent GOAWAY
		}
		e.cc, e.n = nil, 0
		nc, err := p.dial(ctx, addr)
		if err != nil {
			return nil, false, err
		}
		cc, err := p.t.NewClientConn(nc)
		if err != nil {
			nc.Close()
			return nil, false, err
		}
		if !cc.ReserveNewRequest() {
			cc.Close()
			return nil, false, errors.New("http2: a new connection to " + addr + " takes no stream")
		}
		e.cc = cc
	}
	cc := e.cc
	e.n++
	if e.n >= p.perConn {
		e.cc, e.n = nil, 0
		return cc, true, nil
	}
	return cc, false, nil
}

// CloseIdleConnections closes the connections that carry no stream; the
// others close when their streams end or, if they are not spent, at the
// transport's idle time-out.
func (p *perConnH2) CloseIdleConnections() {
	p.mu.Lock()
	eps := make([]*perConnEndpoint, 0, len(p.byAddr))
	for _, e := range p.byAddr {
		eps = append(eps, e)
	}
	p.mu.Unlock()
	for _, e := range eps {
		e.mu.Lock()
		if e.cc != nil {
			if s := e.cc.State(); s.StreamsActive == 0 && s.StreamsReserved == 0 && s.StreamsPending == 0 {
				e.cc.Close()
				e.cc, e.n = nil, 0
			}
		}
		e.mu.Unlock()
	}
}

// forget drops the endpoints not in keep, as meshTarget.forget does.
func (p *perConnH2) forget(keep map[string]bool) {
	p.mu.Lock()
	var gone []*perConnEndpoint
	for addr, e := range p.byAddr {
		if !keep[addr] {
			delete(p.byAddr, addr)
			gone = append(gone, e)
		}
	}
	p.mu.Unlock()
	for _, e := range gone {
		e.mu.Lock()
		if e.cc != nil {
			e.cc.SetDoNotReuse() // drains, then closes
			closeIfIdle(e.cc)
			e.cc = nil
		}
		e.mu.Unlock()
	}
}

// closeRequestBody closes r's body, as a RoundTripper must when it
// fails.
func closeRequestBody(r *http.Request) {
	if r.Body != nil {
		r.Body.Close()
	}
}

var _ http.RoundTripper = (*perConnH2)(nil)
