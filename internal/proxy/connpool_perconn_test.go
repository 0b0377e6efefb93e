package proxy

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	networking "istio.io/api/networking/v1alpha3"
)

// countingRelay is a TCP relay to addr that counts the connections it
// accepts: put in front of a server proxy, it sees every mesh connection
// a client proxy opens to it, whatever runs inside (mutual TLS).
type countingRelay struct {
	ln       net.Listener
	accepted atomic.Int32
	ended    atomic.Int32 // connections the client side closed
}

func newCountingRelay(t testing.TB, addr string) *countingRelay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &countingRelay{ln: ln}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.accepted.Add(1)
			up, err := net.Dial("tcp", addr)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, up)
			mu.Unlock()
			wg.Add(2)
			pipe := func(dst, src net.Conn) {
				defer wg.Done()
				io.Copy(dst, src)
				dst.Close()
				src.Close()
			}
			go func() {
				pipe(up, c)
				r.ended.Add(1)
			}()
			go pipe(c, up)
		}
	}()
	return r
}

// TestDestinationRuleMaxRequestsPerConnection: the client proxy's mesh
// connection to the server proxy carries at most maxRequestsPerConnection
// requests (HTTP/1.1) or streams (HTTP/2), then is closed and a new one
// made; 1 disables keep-alive, unset keeps one connection for every
// request.
func TestDestinationRuleMaxRequestsPerConnection(t *testing.T) {
	tests := []struct {
		name      string
		http      string // the connectionPool's http settings
		h2        bool   // the app speaks HTTP/2 (prior knowledge), as gRPC does
		wantConns int32
	}{
		{"unlimited keeps one connection", "{}", false, 1},
		{"1 disables keep-alive", "{maxRequestsPerConnection: 1}", false, 10},
		{"3 takes four connections for ten requests", "{maxRequestsPerConnection: 3}", false, 4},
		{"HTTP/2 unlimited keeps one connection", "{}", true, 1},
		{"HTTP/2, 1 stream per connection", "{maxRequestsPerConnection: 1}", true, 10},
		{"HTTP/2, 3 streams per connection", "{maxRequestsPerConnection: 3}", true, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPair(t, "")
			relay := newCountingRelay(t, p.server.reg.Address)
			p.server.reg.Address = relay.ln.Addr().String()
			mustApply(t, p.client, clientViewFor(t, "c2", p.server, backendDR(fmt.Sprintf(`  trafficPolicy:
    connectionPool:
      http: %s`, tt.http))))
			c := p.http
			if tt.h2 {
				c = h2cClient(t, p.client)
			}
			for i := range 10 {
				resp, err := c.Get("http://backend.api.svc.cluster.local/")
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || tt.h2 && resp.ProtoMajor != 2 {
					t.Fatalf("request %d: %d %s", i, resp.StatusCode, resp.Proto)
				}
			}
			if n := relay.accepted.Load(); n != tt.wantConns {
				t.Errorf("%d mesh connections for 10 sequential requests, want %d", n, tt.wantConns)
			}
			// The spent connections are closed, not left to idle out.
			deadline := time.Now().Add(5 * time.Second)
			for relay.ended.Load() < tt.wantConns-1 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if n := relay.ended.Load(); n < tt.wantConns-1 {
				t.Errorf("%d of %d spent connections closed", n, tt.wantConns-1)
			}
		})
	}
}

// h2cClient speaks cleartext HTTP/2 (prior knowledge) to p's outbound
// listener, whatever host a URL names.
func h2cClient(t testing.TB, p *testProxy) *http.Client {
	t.Helper()
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	tr := &http.Transport{
		Protocols: &protos,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", p.OutboundAddr().String())
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// TestConnPoolPerConn: maxRequestsPerConnection alone makes a pool that
// admits every request and puts its bound in the request's context;
// without it, or with a nil pool, the context carries none.
func TestConnPoolPerConn(t *testing.T) {
	tests := []struct {
		name string
		http *networking.ConnectionPoolSettings_HTTPSettings
		want int
	}{
		{"unset", nil, 0},
		{"zero is unlimited", &networking.ConnectionPoolSettings_HTTPSettings{MaxRequestsPerConnection: 0}, 0},
		{"one", &networking.ConnectionPoolSettings_HTTPSettings{MaxRequestsPerConnection: 1}, 1},
		{"three, with other limits", &networking.ConnectionPoolSettings_HTTPSettings{MaxRequestsPerConnection: 3, Http2MaxRequests: 5}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newConnPool(&networking.ConnectionPoolSettings{Http: tt.http})
			if tt.want > 0 && c == nil {
				t.Fatal("no pool for a maxRequestsPerConnection")
			}
			if !c.acquire(t.Context()) {
				t.Fatal("maxRequestsPerConnection refused a request")
			}
			c.release()
			if got := perConnLimit(c.forRequest(t.Context())); got != tt.want {
				t.Errorf("perConnLimit %d, want %d", got, tt.want)
			}
		})
	}
}
