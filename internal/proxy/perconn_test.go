package proxy

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"golang.org/x/net/http2"
)

// TestPerConnH2Concurrent: concurrent streams never put more than
// perConn on one connection; each connection's share is spent before the
// next is dialed, so twelve streams at once with a bound of three take
// exactly four connections.
func TestPerConnH2Concurrent(t *testing.T) {
	const streams, perConn = 12, 3
	var (
		mu     sync.Mutex
		byConn = map[string]int{}
		all    sync.WaitGroup
	)
	all.Add(streams)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		byConn[r.RemoteAddr]++
		mu.Unlock()
		all.Done()
		all.Wait() // every stream is open at once
		io.WriteString(w, "ok")
	}))
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)

	tr := &http2.Transport{AllowHTTP: true}
	p := newPerConnH2(tr, func(ctx context.Context, addr string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}, perConn)
	t.Cleanup(p.CloseIdleConnections)
	var wg sync.WaitGroup
	for range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", srv.URL, nil)
			resp, err := p.RoundTrip(req)
			if err != nil {
				t.Error(err)
				all.Done()
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}()
	}
	wg.Wait()
	if len(byConn) != streams/perConn {
		t.Errorf("%d connections for %d concurrent streams at %d per connection: %v", len(byConn), streams, perConn, byConn)
	}
	for c, n := range byConn {
		if n > perConn {
			t.Errorf("connection %s carried %d streams, bound %d", c, n, perConn)
		}
	}
}
