package echo

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string // substring of the error; "" for valid
	}{
		{"loopback any port", Config{Listen: "127.0.0.1:0"}, ""},
		{"all interfaces", Config{Listen: ":8080", Name: "x"}, ""},
		{"missing listen", Config{}, "listen address is required"},
		{"no port", Config{Listen: "127.0.0.1"}, "listen address"},
		{"negative time-out", Config{Listen: ":0", CallTimeout: -time.Second}, "negative call timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.want == "" && err != nil {
				t.Errorf("Validate() = %v, want nil", err)
			}
			if tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("Validate() = %v, want an error containing %q", err, tc.want)
			}
			if _, nerr := New(tc.cfg); (nerr == nil) != (err == nil) {
				t.Errorf("New() error %v disagrees with Validate() %v", nerr, err)
			}
		})
	}
}

func TestRunServesOnLoopbackUntilCancelled(t *testing.T) {
	s, err := New(Config{Listen: "127.0.0.1:0", Name: "svc"})
	if err != nil {
		t.Fatal(err)
	}
	if s.Addr() != nil {
		t.Fatalf("Addr() = %v before Listen, want nil", s.Addr())
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	addr := s.Addr().String()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()

	c := &http.Client{Timeout: 5 * time.Second}
	resp, body := get(t, c, http.MethodGet, "http://"+addr+"/hello", nil)
	if e := decode[Echo](t, body); resp.StatusCode != 200 || e.Name != "svc" || e.Path != "/hello" {
		t.Errorf("GET /hello = %d %+v", resp.StatusCode, e)
	}

	// Cleartext HTTP/2 with prior knowledge, as a proxy may speak to its app.
	var h2 http.Protocols
	h2.SetUnencryptedHTTP2(true)
	c2 := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Protocols: &h2}}
	_, body = get(t, c2, http.MethodGet, "http://"+addr+"/h2", nil)
	if e := decode[Echo](t, body); e.Proto != "HTTP/2.0" {
		t.Errorf("proto over h2c = %q, want HTTP/2.0", e.Proto)
	}
	c.CloseIdleConnections()
	c2.CloseIdleConnections()

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run() = %v after cancel, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Errorf("%s still accepts connections after Run returned", addr)
	}
	if err := s.Run(context.Background()); err == nil {
		t.Error("second Run() = nil, want an error")
	}
}

func TestRunListensItself(t *testing.T) {
	s, err := New(Config{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for s.Addr() == nil && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if s.Addr() == nil {
		t.Fatal("Run did not listen")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run() = %v, want nil", err)
	}
}

func TestRunReportsABusyAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s, err := New(Config{Listen: ln.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Run(context.Background())
	var opErr *net.OpError
	if !errors.As(err, &opErr) || !strings.Contains(err.Error(), ln.Addr().String()) {
		t.Errorf("Run() on a busy address = %v, want a listen error naming it", err)
	}
}
