package echo

import (
	"net/http"
	"reflect"
	"strings"
	"testing"
)

func TestEchoReportsTheRequestAsReceived(t *testing.T) {
	base, c := newTestServer(t, Config{Name: "backend"})
	xfcc := `By=spiffe://cluster.local/ns/api/sa/backend;URI=spiffe://cluster.local/ns/web/sa/frontend`
	resp, body := get(t, c, http.MethodGet, base+"/some/path?a=1&b=2", http.Header{
		"X-Forwarded-Client-Cert": {xfcc},
		"X-Multi":                 {"one", "two"},
	})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d, want 200; body %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	e := decode[Echo](t, body)
	if e.Name != "backend" || e.Method != "GET" || e.Path != "/some/path" || e.Query != "a=1&b=2" {
		t.Errorf("echo = %+v; want name backend, GET /some/path?a=1&b=2", e)
	}
	if e.Host != strings.TrimPrefix(base, "http://") {
		t.Errorf("host = %q, want %q", e.Host, strings.TrimPrefix(base, "http://"))
	}
	if got := e.Headers["X-Forwarded-Client-Cert"]; !reflect.DeepEqual(got, []string{xfcc}) {
		t.Errorf("X-Forwarded-Client-Cert = %q, want %q", got, xfcc)
	}
	if got := e.Headers["X-Multi"]; !reflect.DeepEqual(got, []string{"one", "two"}) {
		t.Errorf("X-Multi = %q, want both values in order", got)
	}
	if e.RemoteAddr == "" || e.Proto != "HTTP/1.1" {
		t.Errorf("remoteAddr = %q, proto = %q; want set, HTTP/1.1", e.RemoteAddr, e.Proto)
	}
}

func TestEchoAnswersEveryMethodAndUnknownPath(t *testing.T) {
	base, c := newTestServer(t, Config{})
	for _, tc := range []struct{ method, path string }{
		{"GET", "/"},
		{"POST", "/anything"},
		{"DELETE", "/size"}, // not /size/N: an ordinary path
		{"PUT", "/callx/y"},
		{"GET", "//double//slashes/"},
	} {
		resp, body := get(t, c, tc.method, base+tc.path, nil)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s %s: status %d, want 200", tc.method, tc.path, resp.StatusCode)
			continue
		}
		e := decode[Echo](t, body)
		if e.Method != tc.method || e.Path != tc.path || e.Name != "echo" {
			t.Errorf("%s %s: echo = %+v; want the method and path as sent, name echo", tc.method, tc.path, e)
		}
	}
}

func TestHealthz(t *testing.T) {
	base, c := newTestServer(t, Config{})
	resp, body := get(t, c, http.MethodGet, base+"/healthz", nil)
	if resp.StatusCode != http.StatusOK || string(body) != "ok\n" {
		t.Errorf("GET /healthz = %d %q, want 200 \"ok\\n\"", resp.StatusCode, body)
	}
	resp, _ = get(t, c, http.MethodPost, base+"/healthz", nil)
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /healthz = %d, want 405", resp.StatusCode)
	}
}
