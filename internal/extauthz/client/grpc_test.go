package client

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"

	"github.com/zmesh/zmesh/internal/authz"
	"github.com/zmesh/zmesh/internal/extauthz"
	"github.com/zmesh/zmesh/internal/extauthz/extauthztest"
)

// grpcAuthorizer is an Authorization server on loopback that answers
// every check with answer, and keeps the requests it got.
type grpcAuthorizer struct {
	authv3.UnimplementedAuthorizationServer
	addr   string
	answer func(context.Context) (*authv3.CheckResponse, error)
	mu     sync.Mutex
	got    []*authv3.CheckRequest
}

func startGRPCAuthorizer(t *testing.T, answer func(context.Context) (*authv3.CheckResponse, error)) *grpcAuthorizer {
	t.Helper()
	a := &grpcAuthorizer{answer: answer}
	a.addr = extauthztest.ServeGRPC(t, a)
	return a
}

func (a *grpcAuthorizer) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	a.mu.Lock()
	a.got = append(a.got, req)
	a.mu.Unlock()
	return a.answer(ctx)
}

func (a *grpcAuthorizer) requests() []*authv3.CheckRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]*authv3.CheckRequest(nil), a.got...)
}

func status(c codes.Code) *rpcstatus.Status { return &rpcstatus.Status{Code: int32(c)} }

func header(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v}}
}

// newClient returns a Client that logs to the test, closed at its end.
func newClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, nil))
	}
	c := New(cfg)
	t.Cleanup(c.Close)
	return c
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

var testPeer = Peer{
	IP:    netip.MustParseAddr("10.1.0.7"),
	ID:    "spiffe://cluster.local/ns/web/sa/frontend",
	Local: netip.MustParseAddrPort("10.1.0.9:8080"),
	MTLS:  true,
	SNI:   "outbound_.8080_._.backend.api.svc.cluster.local",
}

func TestCheckGRPC(t *testing.T) {
	for _, tc := range []struct {
		name     string
		answer   func(context.Context) (*authv3.CheckResponse, error)
		failOpen bool
		want     Answer
		failed   bool // whether want has an Err
	}{
		{
			name: "OK allows, with the headers to set, remove and respond with",
			answer: func(context.Context) (*authv3.CheckResponse, error) {
				return &authv3.CheckResponse{Status: status(codes.OK), HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
					Headers:              []*corev3.HeaderValueOption{header("x-user", "alice")},
					HeadersToRemove:      []string{"x-remove-me"},
					ResponseHeadersToAdd: []*corev3.HeaderValueOption{header("x-session", "s1")},
				}}}, nil
			},
			want: Answer{Verdict: authz.CustomAllow, Set: []*corev3.HeaderValueOption{header("x-user", "alice")},
				Remove: []string{"x-remove-me"}, Respond: []*corev3.HeaderValueOption{header("x-session", "s1")}},
		},
		{
			name: "a denial carries the provider's status, body and headers",
			answer: func(context.Context) (*authv3.CheckResponse, error) {
				return &authv3.CheckResponse{Status: status(codes.PermissionDenied), HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
					Status: &typev3.HttpStatus{Code: typev3.StatusCode(418)}, Body: "not a teapot",
					Headers: []*corev3.HeaderValueOption{header("x-reason", "teapot")},
				}}}, nil
			},
			want: Answer{Verdict: authz.CustomDeny, Status: 418, Body: "not a teapot", Headers: []*corev3.HeaderValueOption{header("x-reason", "teapot")}},
		},
		{
			name: "a denial without a response is 403",
			answer: func(context.Context) (*authv3.CheckResponse, error) {
				return &authv3.CheckResponse{Status: status(codes.Unauthenticated)}, nil
			},
			want: Answer{Verdict: authz.CustomDeny, Status: 403},
		},
		{
			name: "a denial with a status that is no HTTP status is 403",
			answer: func(context.Context) (*authv3.CheckResponse, error) {
				return &authv3.CheckResponse{Status: status(codes.PermissionDenied), HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
					Status: &typev3.HttpStatus{Code: typev3.StatusCode(99)}, Body: "b",
				}}}, nil
			},
			want: Answer{Verdict: authz.CustomDeny, Status: 403, Body: "b"},
		},
		{
			name: "an error response is a failure: statusOnError",
			answer: func(context.Context) (*authv3.CheckResponse, error) {
				return &authv3.CheckResponse{Status: status(codes.OK), HttpResponse: &authv3.CheckResponse_ErrorResponse{ErrorResponse: &authv3.DeniedHttpResponse{
					Status: &typev3.HttpStatus{Code: typev3.StatusCode(500)},
				}}}, nil
			},
			want: Answer{Verdict: authz.CustomDeny, Status: 503}, failed: true,
		},
		{
			name: "a gRPC error is a failure: statusOnError",
			answer: func(context.Context) (*authv3.CheckResponse, error) {
				return nil, context.DeadlineExceeded
			},
			want: Answer{Verdict: authz.CustomDeny, Status: 503}, failed: true,
		},
		{
			name: "a provider slower than its timeout is a failure",
			answer: func(ctx context.Context) (*authv3.CheckResponse, error) {
				<-ctx.Done()
				return nil, ctx.Err()
			},
			want: Answer{Verdict: authz.CustomDeny, Status: 503}, failed: true,
		},
		{
			name: "failOpen allows on a failure",
			answer: func(context.Context) (*authv3.CheckResponse, error) {
				return nil, context.DeadlineExceeded
			},
			failOpen: true,
			want:     Answer{Verdict: authz.CustomAllow}, failed: true,
		},
		{
			name: "failOpen does not turn a denial into an allow",
			answer: func(context.Context) (*authv3.CheckResponse, error) {
				return &authv3.CheckResponse{Status: status(codes.PermissionDenied)}, nil
			},
			failOpen: true,
			want:     Answer{Verdict: authz.CustomDeny, Status: 403},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := startGRPCAuthorizer(t, tc.answer)
			c := newClient(t, Config{})
			m := Mesh{Providers: map[string]*extauthz.Provider{"ext": {
				Name: "ext", Service: a.addr, Timeout: 200 * time.Millisecond, FailOpen: tc.failOpen, StatusOnError: 503,
			}}}
			r := httptest.NewRequest("GET", "http://backend.api/x", nil)
			got := c.Check(context.Background(), m, "ext", Request{HTTP: r, Path: "/x", Peer: testPeer})
			if (got.Err != nil) != tc.failed {
				t.Fatalf("err %v, want one: %v", got.Err, tc.failed)
			}
			got.Err = nil
			if !sameAnswer(got, tc.want) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// sameAnswer compares answers but for their Err.
func sameAnswer(a, b Answer) bool {
	s := func(opts []*corev3.HeaderValueOption) string {
		var buf bytes.Buffer
		for _, o := range opts {
			buf.WriteString(o.GetHeader().GetKey() + "=" + o.GetHeader().GetValue() + ";")
		}
		return buf.String()
	}
	return a.Verdict == b.Verdict && a.Status == b.Status && a.Body == b.Body &&
		s(a.Headers) == s(b.Headers) && s(a.Set) == s(b.Set) && s(a.Respond) == s(b.Respond) &&
		strings.Join(a.Remove, ",") == strings.Join(b.Remove, ",")
}

// TestGRPCCheckRequest: the CheckRequest is Envoy's: the peers with their
// principals, the TLS session's SNI, the HTTP request with lower-case
// headers, repeated values joined, and the pseudo-headers, with the
// normalized path.
func TestGRPCCheckRequest(t *testing.T) {
	a := startGRPCAuthorizer(t, func(context.Context) (*authv3.CheckResponse, error) {
		return &authv3.CheckResponse{Status: status(codes.OK)}, nil
	})
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	c := newClient(t, Config{Principal: "spiffe://cluster.local/ns/api/sa/backend", Now: func() time.Time { return at }})
	m := Mesh{Providers: map[string]*extauthz.Provider{"ext": {Name: "ext", Service: a.addr, Timeout: time.Second}}}
	r := httptest.NewRequest("POST", "http://backend.api/a/../b?q=1", strings.NewReader("body"))
	r.Header.Add("X-Multi", "1")
	r.Header.Add("X-Multi", "2")
	if got := c.Check(context.Background(), m, "ext", Request{HTTP: r, Path: "/b", Peer: testPeer}); got.Verdict != authz.CustomAllow || got.Err != nil {
		t.Fatalf("got %+v", got)
	}
	attrs := a.requests()[0].GetAttributes()
	if got := attrs.GetSource(); got.GetPrincipal() != testPeer.ID || got.GetAddress().GetSocketAddress().GetAddress() != "10.1.0.7" {
		t.Errorf("source %v", got)
	}
	if got := attrs.GetDestination(); got.GetPrincipal() != "spiffe://cluster.local/ns/api/sa/backend" ||
		got.GetAddress().GetSocketAddress().GetPortValue() != 8080 {
		t.Errorf("destination %v", got)
	}
	if got := attrs.GetTlsSession().GetSni(); got != testPeer.SNI {
		t.Errorf("SNI %q", got)
	}
	if got := attrs.GetRequest().GetTime().AsTime(); !got.Equal(at) {
		t.Errorf("time %v, want %v", got, at)
	}
	h := attrs.GetRequest().GetHttp()
	if h.GetMethod() != "POST" || h.GetPath() != "/b?q=1" || h.GetQuery() != "q=1" || h.GetHost() != "backend.api" ||
		h.GetScheme() != "https" || h.GetSize() != 4 || h.GetProtocol() != "HTTP/1.1" {
		t.Errorf("http %v", h)
	}
	for k, v := range map[string]string{"x-multi": "1,2", ":path": "/b?q=1", ":method": "POST", ":authority": "backend.api", ":scheme": "https"} {
		if h.GetHeaders()[k] != v {
			t.Errorf("header %s = %q, want %q", k, h.GetHeaders()[k], v)
		}
	}
}

// TestCheckConnection: a TCP connection is checked with its peers only;
// an HTTP provider cannot judge one, and failOpen settles that as any
// failure.
func TestCheckConnection(t *testing.T) {
	a := startGRPCAuthorizer(t, func(context.Context) (*authv3.CheckResponse, error) {
		return &authv3.CheckResponse{Status: status(codes.OK)}, nil
	})
	denier := startGRPCAuthorizer(t, func(context.Context) (*authv3.CheckResponse, error) {
		return &authv3.CheckResponse{Status: status(codes.PermissionDenied)}, nil
	})
	hp := &extauthz.HTTPProvider{}
	m := Mesh{Providers: map[string]*extauthz.Provider{
		"grpc":      {Name: "grpc", Service: a.addr, Timeout: time.Second},
		"deny":      {Name: "deny", Service: denier.addr, Timeout: time.Second},
		"dead":      {Name: "dead", Service: extauthztest.ClosedAddr(t), Timeout: time.Second},
		"dead-open": {Name: "dead-open", Service: extauthztest.ClosedAddr(t), Timeout: time.Second, FailOpen: true},
		"http":      {Name: "http", HTTP: hp, Service: a.addr, Timeout: time.Second},
		"http-open": {Name: "http-open", HTTP: hp, Service: a.addr, Timeout: time.Second, FailOpen: true},
	}}
	c := newClient(t, Config{})
	for _, tc := range []struct {
		provider string
		want     authz.CustomVerdict
	}{
		{"grpc", authz.CustomAllow},
		{"deny", authz.CustomDeny},
		{"dead", authz.CustomDeny},
		{"dead-open", authz.CustomAllow},
		{"http", authz.CustomDeny},
		{"http-open", authz.CustomAllow},
		{"unknown", authz.CustomDeny},
	} {
		if got := c.CheckConnection(context.Background(), m, tc.provider, testPeer); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.provider, got, tc.want)
		}
	}
	reqs := a.requests()
	if len(reqs) != 1 {
		t.Fatalf("the gRPC provider got %d checks, want 1 (an HTTP provider is not asked)", len(reqs))
	}
	if attrs := reqs[0].GetAttributes(); attrs.GetRequest().GetHttp() != nil || attrs.GetSource().GetPrincipal() != testPeer.ID {
		t.Errorf("connection check %v", attrs)
	}
}

// TestCheckUnknownProvider: a name the mesh does not have denies with 403
// and asks nobody.
func TestCheckUnknownProvider(t *testing.T) {
	c := newClient(t, Config{})
	got := c.Check(context.Background(), Mesh{}, "nonexistent", Request{HTTP: httptest.NewRequest("GET", "/", nil), Path: "/"})
	if got.Verdict != authz.CustomDeny || got.Status != http.StatusForbidden || got.Err == nil {
		t.Fatalf("got %+v", got)
	}
}

// TestClose: after Close, checks fail without dialling, and failOpen
// settles them.
func TestClose(t *testing.T) {
	a := startGRPCAuthorizer(t, func(context.Context) (*authv3.CheckResponse, error) {
		return &authv3.CheckResponse{Status: status(codes.OK)}, nil
	})
	c := newClient(t, Config{})
	m := Mesh{Providers: map[string]*extauthz.Provider{
		"ext":  {Name: "ext", Service: a.addr, Timeout: time.Second, StatusOnError: 503},
		"open": {Name: "open", Service: a.addr, Timeout: time.Second, FailOpen: true},
	}}
	req := func() Request { return Request{HTTP: httptest.NewRequest("GET", "/", nil), Path: "/", Peer: testPeer} }
	if got := c.Check(context.Background(), m, "ext", req()); got.Verdict != authz.CustomAllow {
		t.Fatalf("before Close: %+v", got)
	}
	c.Close()
	if got := c.Check(context.Background(), m, "ext", req()); got.Verdict != authz.CustomDeny || got.Status != 503 || got.Err != errClosed {
		t.Errorf("after Close: %+v", got)
	}
	if got := c.Check(context.Background(), m, "open", req()); got.Verdict != authz.CustomAllow || got.Err != errClosed {
		t.Errorf("after Close, failOpen: %+v", got)
	}
	if n := len(a.requests()); n != 1 {
		t.Errorf("the provider got %d checks, want 1", n)
	}
}
