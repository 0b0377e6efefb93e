package proxy

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestHTTPServerStopsTwice: the proxy's lifecycle stops a listener's server
// more than once (a drain's Shutdown, then the proxy's own stop, or Close
// after Shutdown), served or never served (a gateway has no outbound
// listener); every call must return, whatever the first one got.
func TestHTTPServerStopsTwice(t *testing.T) {
	for _, serve := range []bool{true, false} {
		t.Run(map[bool]string{true: "served", false: "never served"}[serve], func(t *testing.T) { stopsTwice(t, serve) })
	}
}

func stopsTwice(t *testing.T, serve bool) {
	for name, stops := range map[string][]string{
		"shutdown twice":         {"shutdown", "shutdown"},
		"shutdown then close":    {"shutdown", "close"},
		"close then shutdown":    {"close", "shutdown"},
		"close, close, shutdown": {"close", "close", "shutdown"},
	} {
		t.Run(name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			s := newHTTPServer(&http.Server{Handler: http.NotFoundHandler()}, ln.Addr())
			served := make(chan error, 1)
			if serve {
				go func() { served <- s.Serve(ln) }()
				// A request served, so that the server is running for sure.
				waitHTTP(t, "http://"+ln.Addr().String()+"/")
			} else {
				served <- nil
			}
			for i, how := range stops {
				done := make(chan struct{})
				go func() {
					defer close(done)
					ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
					defer cancel()
					if how == "shutdown" {
						_ = s.Shutdown(ctx)
					} else {
						_ = s.Close()
					}
				}()
				select {
				case <-done:
				case <-time.After(5 * time.Second):
					t.Fatalf("stop #%d (%s) did not return", i+1, how)
				}
			}
			select {
			case <-served:
			case <-time.After(5 * time.Second):
				t.Fatal("Serve did not return after the stops")
			}
		})
	}
}

// waitHTTP waits until a GET of url gets an answer.
func waitHTTP(t *testing.T, url string) {
	t.Helper()
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil}}
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no answer at %s: %v", url, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
