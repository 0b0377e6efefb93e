package proxy

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
)

// countingRelay is a TCP relay to addr that counts the connections it
// accepts: put in front of a server proxy, it sees every mesh connection
// a client proxy opens to it, whatever runs inside (mutual TLS).
type countingRelay struct {
	ln       net.Listener
	accepted atomic.Int32
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
			go pipe(up, c)
			go pipe(c, up)
		}
	}()
	return r
}

// TestDestinationRuleMaxRequestsPerConnection: the client proxy's mesh
// connection to the server proxy carries at most maxRequestsPerConnection
// requests, then is closed and a new one made; 1 disables keep-alive,
// unset keeps one connection for every request.
func TestDestinationRuleMaxRequestsPerConnection(t *testing.T) {
	tests := []struct {
		name      string
		http      string // the connectionPool's http settings
		wantConns int32
	}{
		{"unlimited keeps one connection", "{}", 1},
		{"1 disables keep-alive", "{maxRequestsPerConnection: 1}", 10},
		{"3 takes four connections for ten requests", "{maxRequestsPerConnection: 3}", 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPair(t, "")
			relay := newCountingRelay(t, p.server.reg.Address)
			p.server.reg.Address = relay.ln.Addr().String()
			mustApply(t, p.client, clientViewFor(t, "c2", p.server, backendDR(fmt.Sprintf(`  trafficPolicy:
    connectionPool:
      http: %s`, tt.http))))
			for i := range 10 {
				if code, body := get(t, p.http, "http://backend.api.svc.cluster.local/"); code != http.StatusOK {
					t.Fatalf("request %d: %d %q", i, code, body)
				}
			}
			if n := relay.accepted.Load(); n != tt.wantConns {
				t.Errorf("%d mesh connections for 10 sequential requests, want %d", n, tt.wantConns)
			}
		})
	}
}
