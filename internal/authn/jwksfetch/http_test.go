package jwksfetch

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestHTTPFetch(t *testing.T) {
	tests := []struct {
		name     string
		handler  http.HandlerFunc
		maxBytes int64
		timeout  time.Duration
		want     string // body on success
		wantErr  string
	}{
		{
			name: "200 with a JSON body, asked for as JSON",
			handler: func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodGet || r.Header.Get("Accept") != "application/json" {
					http.Error(w, "bad request", http.StatusBadRequest)
					return
				}
				w.Write([]byte(`{"keys":[]}`))
			},
			want: `{"keys":[]}`,
		},
		{
			name:    "a status other than 200 is an error",
			handler: func(w http.ResponseWriter, r *http.Request) { http.Error(w, "gone", http.StatusNotFound) },
			wantErr: "404",
		},
		{
			name:     "a body over MaxBytes is refused",
			handler:  func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(strings.Repeat("x", 100))) },
			maxBytes: 99,
			wantErr:  "larger than 99 bytes",
		},
		{
			name:     "a body of exactly MaxBytes is accepted",
			handler:  func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(strings.Repeat("x", 99))) },
			maxBytes: 99,
			want:     strings.Repeat("x", 99),
		},
		{
			name: "the context's deadline bounds a slow server",
			handler: func(w http.ResponseWriter, r *http.Request) {
				select {
				case <-r.Context().Done():
				case <-time.After(5 * time.Second):
				}
			},
			timeout: 100 * time.Millisecond,
			wantErr: "deadline exceeded",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewTLSServer(tt.handler)
			defer srv.Close()
			ctx := context.Background()
			if tt.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.timeout)
				defer cancel()
			}
			f := &HTTP{Client: srv.Client(), MaxBytes: tt.maxBytes}
			got, err := f.Fetch(ctx, srv.URL+"/jwks")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// TestHTTPDefaultClientRefusesUntrustedServer: the default client verifies
// the server's certificate (httptest's is self-signed).
func TestHTTPDefaultClientRefusesUntrustedServer(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("{}")) }))
	defer srv.Close()
	if _, err := (&HTTP{}).Fetch(context.Background(), srv.URL); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("err = %v, want a certificate error", err)
	}
}
