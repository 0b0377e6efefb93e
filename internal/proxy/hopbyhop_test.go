package proxy

import (
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// TestConnectionCannotStripProxyHeaders: a caller names, in Connection,
// headers the proxy sets for the app (the caller's identity in XFCC).
// Hop-by-hop headers are the caller's own, removed before the proxy adds
// its headers, so the app still gets the proxy's.
func TestConnectionCannotStripProxyHeaders(t *testing.T) {
	p := newPair(t, strictMesh+"---\n"+allowFrontend)
	c := meshClient(t, p.ca, "web", "frontend", false)
	req, _ := http.NewRequest("GET", "https://"+p.server.InboundAddr().String()+"/x", nil)
	req.Header.Set("Connection", "X-Forwarded-Client-Cert, X-Caller-Hop")
	req.Header.Set("X-Caller-Hop", "dropped")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if xfcc := echoField(string(body), "xfcc"); !strings.Contains(xfcc, "URI=spiffe://cluster.local/ns/web/sa/frontend") {
		t.Errorf("app saw XFCC %q: the caller's Connection header removed the proxy's", xfcc)
	}
}

func TestDropNominatedHeaders(t *testing.T) {
	tests := []struct {
		name string
		in   http.Header
		want http.Header
	}{
		{"no Connection", http.Header{"X-A": {"1"}}, http.Header{"X-A": {"1"}}},
		{"close names no header", http.Header{"Connection": {"close"}, "X-A": {"1"}}, http.Header{"X-A": {"1"}}},
		{
			"named headers go, any case, across values",
			http.Header{"Connection": {"x-a, X-B", " x-c ,,"}, "X-A": {"1"}, "X-B": {"2"}, "X-C": {"3"}, "X-D": {"4"}},
			http.Header{"X-D": {"4"}},
		},
		{
			"an upgrade keeps what ReverseProxy relays it by",
			http.Header{"Connection": {"Upgrade, X-A"}, "Upgrade": {"websocket"}, "X-A": {"1"}},
			http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}},
		},
		{
			"hop-by-hop names stay for ReverseProxy to remove",
			http.Header{"Connection": {"keep-alive, te"}, "Keep-Alive": {"timeout=5"}, "Te": {"trailers"}},
			http.Header{"Connection": {"Keep-Alive, Te"}, "Keep-Alive": {"timeout=5"}, "Te": {"trailers"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dropNominatedHeaders(tt.in)
			if !reflect.DeepEqual(tt.in, tt.want) {
				t.Errorf("got %v, want %v", tt.in, tt.want)
			}
		})
	}
}

func FuzzDropNominatedHeaders(f *testing.F) {
	f.Add("Upgrade, X-A", "x-a")
	f.Add(",,close, keep-alive", "Keep-Alive")
	f.Fuzz(func(t *testing.T, conn, other string) {
		h := http.Header{"Connection": {conn}, http.CanonicalHeaderKey(other): {"v"}}
		dropNominatedHeaders(h)
		for _, v := range h["Connection"] {
			for tok := range strings.SplitSeq(v, ",") {
				if name := http.CanonicalHeaderKey(strings.TrimSpace(tok)); !hopHeaders[name] {
					t.Fatalf("Connection still names %q", name)
				}
			}
		}
		for tok := range strings.SplitSeq(conn, ",") {
			name := http.CanonicalHeaderKey(strings.TrimSpace(tok))
			if name != "" && !hopHeaders[name] && h[name] != nil {
				t.Fatalf("%q is named in Connection and still there", name)
			}
		}
	})
}
