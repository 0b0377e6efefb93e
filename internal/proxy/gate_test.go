package proxy

import (
	"net"
	"testing"
	"time"

	"github.com/zmesh/zmesh/internal/meshtest"
	"github.com/zmesh/zmesh/internal/registry"
	"github.com/zmesh/zmesh/internal/xds"
)

// A request that reaches a server proxy before its first configuration
// waits for it, and is then served, instead of being refused: a restarted
// proxy's queue holds such connections (fdstore). Before the gate the
// inbound accepted and closed them, and the caller got a 503.
func TestRequestBeforeFirstConfigWaitsForIt(t *testing.T) {
	ca := meshtest.NewCA(t, testTD)
	server := startProxy(t, ca, "api", "backend", echoApp(t))
	client := startProxy(t, ca, "web", "frontend", echoApp(t))
	mustApply(t, client, &xds.View{Version: "c1", Mesh: mesh(), Services: []registry.Service{serviceOf(server)}})
	c := proxyClient(t, client)

	type result struct {
		code int
		body string
	}
	done := make(chan result, 1)
	go func() {
		resp, err := c.Get("http://backend.api.svc.cluster.local/")
		if err != nil {
			done <- result{body: err.Error()}
			return
		}
		defer resp.Body.Close()
		done <- result{code: resp.StatusCode}
	}()
	select {
	case r := <-done:
		t.Fatalf("answered before the server proxy was configured: %d %s", r.code, r.body)
	case <-time.After(300 * time.Millisecond):
	}
	mustApply(t, server, policyView(t, "s1", mesh(), ""))
	select {
	case r := <-done:
		if r.code != 200 {
			t.Fatalf("after the server's first configuration: %d %s", r.code, r.body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no answer after the server's first configuration")
	}
}

// A listener closed while waiting at the gate (a drain before any
// configuration) ends its Accept.
func TestGatedListenerClosesWhileWaiting(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := gate(ln, make(chan struct{}))
	errc := make(chan error, 1)
	go func() {
		_, err := g.Accept()
		errc <- err
	}()
	g.Close()
	select {
	case err := <-errc:
		if err != net.ErrClosed {
			t.Fatalf("Accept: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept still waiting after Close")
	}
}
