package http1

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// BenchmarkRoundTrip compares Transport with http.Transport (configured
// as the proxy configures it) on the same loopback app answering 1 KiB,
// one request at a time (ns/op is latency) and from parallel goroutines.
func BenchmarkRoundTrip(b *testing.B) {
	body := strings.Repeat("z", 1024)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, body)
	}))
	defer srv.Close()
	std := &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 512}
	defer std.CloseIdleConnections()
	fast, err := New(Config{Addr: srv.Listener.Addr().String(), Fallback: std, MaxIdleConns: 512})
	if err != nil {
		b.Fatal(err)
	}
	defer fast.CloseIdleConnections()

	for _, rt := range []struct {
		name string
		rt   http.RoundTripper
	}{{"http1", fast}, {"net-http", std}} {
		do := func(b *testing.B, req *http.Request) {
			resp, err := rt.rt.RoundTrip(req)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		b.Run(rt.name+"/serial", func(b *testing.B) {
			req, _ := http.NewRequest("GET", srv.URL+"/bench", nil)
			b.ReportAllocs()
			for b.Loop() {
				do(b, req)
			}
		})
		b.Run(rt.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				req, _ := http.NewRequest("GET", srv.URL+"/bench", nil)
				for pb.Next() {
					do(b, req)
				}
			})
		})
	}
}
