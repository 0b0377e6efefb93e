package ui

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/zmesh/zmesh/internal/check"
)

func testHandler(t *testing.T) http.Handler {
	snap := snapshot(t, policiesYAML)
	m := Build(Inputs{Now: time.Unix(1000, 0), Workloads: testWorkloads, Snapshot: snap, Mesh: testMesh})
	h := NewHandler(HandlerConfig{
		Model: func(context.Context) *Model { return m },
		Check: func(ctx context.Context, in *check.Input) (check.Output, error) {
			return check.Evaluate(ctx, snap, in, check.Options{RootNamespace: "istio-system", TrustDomain: "cluster.local"})
		},
	})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "admin") })
	h.Register(mux)
	return mux
}

func TestHandler(t *testing.T) {
	h := testHandler(t)
	const stranger = `{"workload":{"namespace":"api","labels":{"app":"backend"}},"source":{"principal":"cluster.local/ns/web/sa/stranger"},"request":{"port":8080,"method":"GET","path":"/"}}`
	const frontend = `{"workload":{"namespace":"api","labels":{"app":"backend"}},"source":{"principal":"cluster.local/ns/web/sa/frontend"},"request":{"port":8080,"method":"GET","path":"/"}}`
	for _, tc := range []struct {
		name, method, target, host, ctype, body string
		want                                    int
		contains                                string
	}{
		{"the page", "GET", "/", "127.0.0.1:15014", "", "", 200, `<table id="edges">`},
		{"the page by localhost", "GET", "/", "localhost:15014", "", "", 200, "<h1>zmesh</h1>"},
		{"the page by IPv6", "GET", "/", "[::1]:15014", "", "", 200, "<h1>zmesh</h1>"},
		{"the model", "GET", "/ui/mesh.json", "127.0.0.1", "", "", 200, `"key":"api/backend"`},
		{"a name that may rebind to us is refused", "GET", "/ui/mesh.json", "attacker.example:15014", "", "", 421, ""},
		{"other admin routes are not the web view's", "GET", "/metrics", "attacker.example", "", "", 200, "admin"},
		{"a denied request explained", "POST", "/ui/check", "127.0.0.1", "application/json", stranger, 200, `"decision":"DENY","stage":"authorization"`},
		{"an allowed request", "POST", "/ui/check", "127.0.0.1", "application/json", frontend, 200, `"decision":"ALLOW"`},
		{"a form post (cross-site without preflight) is refused", "POST", "/ui/check", "127.0.0.1", "application/x-www-form-urlencoded", stranger, 415, ""},
		{"a text/plain post is refused", "POST", "/ui/check", "127.0.0.1", "text/plain", stranger, 415, ""},
		{"unknown fields are an error, as in zmesh check", "POST", "/ui/check", "127.0.0.1", "application/json", `{"workload":{"namespace":"api"},"request":{"port":1},"bogus":1}`, 400, "unknown field"},
		{"a bad port", "POST", "/ui/check", "127.0.0.1", "application/json", `{"workload":{"namespace":"api"},"request":{"port":0}}`, 400, "port"},
		{"too large", "POST", "/ui/check", "127.0.0.1", "application/json", `{"workload":{"namespace":"` + strings.Repeat("a", 70<<10) + `"}}`, 413, ""},
		{"GET on check", "GET", "/ui/check", "127.0.0.1", "", "", 405, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, tc.target, strings.NewReader(tc.body))
			r.Host = tc.host
			if tc.ctype != "" {
				r.Header.Set("Content-Type", tc.ctype)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			if rec.Code != tc.want || !strings.Contains(rec.Body.String(), tc.contains) {
				t.Errorf("%s %s = %d %.300s; want %d with %q", tc.method, tc.target, rec.Code, rec.Body.String(), tc.want, tc.contains)
			}
			if tc.target == "/" && rec.Code == 200 && rec.Header().Get("Content-Security-Policy") != ContentSecurityPolicy {
				t.Error("the page is served without its Content-Security-Policy")
			}
			if strings.HasPrefix(tc.target, "/ui/mesh") && rec.Code == 200 {
				var m Model
				if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil || len(m.Workloads) != 3 {
					t.Errorf("model JSON: %v, %d workloads", err, len(m.Workloads))
				}
			}
		})
	}
}
