package echo

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
)

func TestSizeServesExactlyNBytes(t *testing.T) {
	base, c := newTestServer(t, Config{})
	for _, n := range []int{0, 1, 1024, len(filler), len(filler) + 1, 3*len(filler) + 7, MaxSize} {
		resp, body := get(t, c, http.MethodGet, base+"/size/"+strconv.Itoa(n), nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("/size/%d: status %d, want 200", n, resp.StatusCode)
		}
		if len(body) != n || resp.ContentLength != int64(n) {
			t.Fatalf("/size/%d: %d bytes, Content-Length %d", n, len(body), resp.ContentLength)
		}
		for i, b := range body {
			if b != 'a'+byte(i%len(filler)%26) {
				t.Fatalf("/size/%d: byte %d = %q, want the repeating alphabet", n, i, b)
			}
		}
	}
}

func TestSizeHEADSendsLengthOnly(t *testing.T) {
	base, c := newTestServer(t, Config{})
	resp, body := get(t, c, http.MethodHead, base+"/size/4096", nil)
	if resp.StatusCode != http.StatusOK || resp.ContentLength != 4096 || len(body) != 0 {
		t.Errorf("HEAD /size/4096 = %d, Content-Length %d, %d body bytes; want 200, 4096, 0",
			resp.StatusCode, resp.ContentLength, len(body))
	}
}

func TestSizeRejectsBadInput(t *testing.T) {
	base, c := newTestServer(t, Config{})
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/size/", http.StatusBadRequest},
		{"GET", "/size/abc", http.StatusBadRequest},
		{"GET", "/size/-1", http.StatusBadRequest},
		{"GET", "/size/+1", http.StatusBadRequest},
		{"GET", "/size/1.5", http.StatusBadRequest},
		{"GET", "/size/1024/", http.StatusBadRequest},
		{"GET", "/size/0x10", http.StatusBadRequest},
		{"GET", "/size/" + strconv.Itoa(MaxSize+1), http.StatusBadRequest},
		{"GET", "/size/99999999999999999999999", http.StatusBadRequest},
		{"POST", "/size/10", http.StatusMethodNotAllowed},
	} {
		resp, body := get(t, c, tc.method, base+tc.path, nil)
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s = %d, want %d", tc.method, tc.path, resp.StatusCode, tc.want)
			continue
		}
		if e := decode[errorBody](t, body); e.Error == "" {
			t.Errorf("%s %s: no error message in %q", tc.method, tc.path, body)
		}
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"0", "1024", "16777216", "16777217", "-1", "", "00000001", "1e3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, ok := parseSize(s)
		if !ok {
			return
		}
		if n < 0 || n > MaxSize {
			t.Fatalf("parseSize(%q) = %d, outside [0, MaxSize]", s, n)
		}
		if want, err := strconv.Atoi(s); err != nil || want != n {
			t.Fatalf("parseSize(%q) = %d, strconv.Atoi says %d, %v", s, n, want, err)
		}
	})
}

// BenchmarkSize1KiB measures the app side of the latency benchmark: the
// handler for the 1 KiB responses the load generator asks for.
func BenchmarkSize1KiB(b *testing.B) {
	s, err := New(Config{Listen: "127.0.0.1:0"})
	if err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodGet, "/size/1024", nil)
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		s.ServeHTTP(w, req)
	}
}

// discardWriter is a ResponseWriter that keeps nothing, so the benchmark
// measures the handler alone.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}
