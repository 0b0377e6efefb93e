package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/zmesh/zmesh/internal/admission"
	"github.com/zmesh/zmesh/internal/inject"
)

var namespaces = map[string]map[string]string{
	"shop": {"istio-injection": "enabled"},
	"dev":  {},
}

func lookup(_ context.Context, name string) (map[string]string, error) {
	if l, ok := namespaces[name]; ok {
		return l, nil
	}
	return nil, errors.New("namespace not found")
}

func newServer(t *testing.T) *httptest.Server {
	t.Helper()
	s := &inject.Settings{Image: "zmesh/zmesh:test"}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	h, err := New(Config{Settings: s, Namespaces: lookup})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

const podJSON = `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","namespace":"NS","labels":{"app":"web"},"annotations":ANN},"spec":{"containers":[{"name":"web","image":"web"}]}}`

func review(ns, annotations string, mutate func(string) string) string {
	if annotations == "" {
		annotations = "{}"
	}
	pod := strings.NewReplacer("NS", ns, "ANN", annotations).Replace(podJSON)
	r := `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u-1","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"namespace":"` + ns + `","operation":"CREATE","userInfo":{"username":"admin"},"object":` + pod + `}}`
	if mutate != nil {
		r = mutate(r)
	}
	return r
}

func post(t *testing.T, url, contentType, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, contentType, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestHandlerRejectsBadRequests(t *testing.T) {
	srv := newServer(t)
	tests := []struct {
		name, contentType, body string
		code                    int
		msg                     string
	}{
		{"not JSON", "application/json", "{", 400, "decode AdmissionReview"},
		{"wrong content type", "text/plain", review("shop", "", nil), 415, "application/json"},
		{"unknown field", "application/json", review("shop", "", func(s string) string { return strings.Replace(s, `"uid"`, `"colour":"red","uid"`, 1) }), 400, `unknown field "request.colour"`},
		{"duplicate field", "application/json", review("shop", "", func(s string) string { return strings.Replace(s, `"uid":"u-1"`, `"uid":"u-1","uid":"u-2"`, 1) }), 400, "duplicate field"},
		{"v1beta1 review", "application/json", review("shop", "", func(s string) string { return strings.Replace(s, "admission.k8s.io/v1", "admission.k8s.io/v1beta1", 1) }), 400, "want an admission.k8s.io/v1 AdmissionReview"},
		{"no request", "application/json", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`, 400, "without a request"},
		{"no uid", "application/json", review("shop", "", func(s string) string { return strings.Replace(s, `"uid":"u-1",`, "", 1) }), 400, "without a uid"},
		{"trailing data", "application/json", review("shop", "", nil) + "{}", 400, "decode AdmissionReview"},
		{"too large", "application/json", `{"apiVersion":"` + strings.Repeat("a", admission.MaxBody) + `"}`, 413, "too large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := post(t, srv.URL+"/inject", tt.contentType, tt.body)
			if code != tt.code || !strings.Contains(body, tt.msg) {
				t.Errorf("got %d %q, want %d with %q", code, body, tt.code, tt.msg)
			}
		})
	}
	resp, err := http.Get(srv.URL + "/inject")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET = %d, want 405", resp.StatusCode)
	}
}

func decodeResponse(t *testing.T, body string) *admissionv1.AdmissionResponse {
	t.Helper()
	var r admissionv1.AdmissionReview
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if r.APIVersion != "admission.k8s.io/v1" || r.Kind != "AdmissionReview" || r.Response == nil || r.Response.UID != "u-1" {
		t.Fatalf("response envelope %s", body)
	}
	return r.Response
}

func TestHandlerDecides(t *testing.T) {
	srv := newServer(t)
	tests := []struct {
		name    string
		body    string
		allowed bool
		patched bool
		msg     string
	}{
		{name: "injected in an enabled namespace", body: review("shop", "", nil), allowed: true, patched: true},
		{name: "unlabelled namespace passes unchanged", body: review("dev", "", nil), allowed: true},
		{name: "malformed annotation refused", body: review("shop", `{"traffic.sidecar.istio.io/excludeOutboundPorts":"80;443"}`, nil), msg: `excludeOutboundPorts="80;443"`},
		{name: "namespace lookup failure refuses", body: review("gone", "", nil), msg: "cannot read namespace gone"},
		{name: "update passes unchanged", body: review("shop", "", func(s string) string { return strings.Replace(s, `"CREATE"`, `"UPDATE"`, 1) }), allowed: true},
		{name: "other kind passes unchanged", body: review("shop", "", func(s string) string { return strings.Replace(s, `"kind":"Pod"}`, `"kind":"Service"}`, 1) }), allowed: true},
		{name: "unknown pod field tolerated", body: review("shop", "", func(s string) string { return strings.Replace(s, `"spec":{`, `"spec":{"futureField":1,`, 1) }), allowed: true, patched: true},
		{name: "duplicate pod field refused", body: review("shop", "", func(s string) string {
			return strings.Replace(s, `"spec":{`, `"spec":{"hostNetwork":true,"hostNetwork":false,`, 1)
		}), msg: "duplicate field"},
		{name: "missing object refused", body: review("shop", "", func(s string) string { i := strings.Index(s, `,"object"`); return s[:i] + "}}" }), msg: "without an object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := post(t, srv.URL+"/inject", "application/json", tt.body)
			if code != 200 {
				t.Fatalf("status %d %s", code, body)
			}
			r := decodeResponse(t, body)
			if r.Allowed != tt.allowed {
				t.Fatalf("allowed = %v (%v), want %v", r.Allowed, r.Result, tt.allowed)
			}
			if !r.Allowed && (r.Result == nil || !strings.Contains(r.Result.Message, tt.msg)) {
				t.Errorf("refusal %v, want a message with %q", r.Result, tt.msg)
			}
			if (r.Patch != nil) != tt.patched {
				t.Fatalf("patch %s, want patched=%v", r.Patch, tt.patched)
			}
			if !tt.patched {
				return
			}
			if r.PatchType == nil || *r.PatchType != admissionv1.PatchTypeJSONPatch {
				t.Errorf("patchType %v", r.PatchType)
			}
			var rev admissionv1.AdmissionReview
			_ = json.Unmarshal([]byte(tt.body), &rev)
			p, err := jsonpatch.DecodePatch(r.Patch)
			if err != nil {
				t.Fatal(err)
			}
			out, err := p.Apply(rev.Request.Object.Raw)
			if err != nil {
				t.Fatal(err)
			}
			var pod corev1.Pod
			if err := json.Unmarshal(out, &pod); err != nil {
				t.Fatal(err)
			}
			if len(pod.Spec.InitContainers) != 2 || pod.Spec.InitContainers[1].Name != inject.ProxyContainer {
				t.Errorf("patched pod init containers %v", pod.Spec.InitContainers)
			}
		})
	}
}

// FuzzDecodeReview checks that any body is decoded or refused, never a
// panic, and that an accepted review has a request with a uid.
func FuzzDecodeReview(f *testing.F) {
	f.Add([]byte(review("shop", "", nil)))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x"}}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := admission.DecodeReview(b)
		if err != nil {
			return
		}
		if r.Request == nil || r.Request.UID == "" {
			t.Fatal("accepted a review without request uid")
		}
		_, _ = DecodePod(r.Request.Object.Raw)
	})
}
