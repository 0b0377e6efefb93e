package validator

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// post sends a review of object for op through the handler, as the
// apiserver does, and returns the response.
func post(t *testing.T, h http.Handler, op admissionv1.Operation, kind, object string) *admissionv1.AdmissionResponse {
	t.Helper()
	review := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: "u-1", Operation: op, Namespace: "shop", Name: "p",
			Kind:   metav1.GroupVersionKind{Group: "security.istio.io", Version: "v1", Kind: kind},
			Object: runtime.RawExtension{Raw: []byte(object)},
		},
	}
	body, _ := json.Marshal(review)
	req := httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Response == nil {
		t.Fatalf("response %s: %v", rec.Body, err)
	}
	if out.Response.UID != "u-1" {
		t.Errorf("response uid %q", out.Response.UID)
	}
	return out.Response
}

func TestReview(t *testing.T) {
	h, err := New(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	policy := func(apiVersion, spec string) string {
		return `{"apiVersion":"` + apiVersion + `","kind":"AuthorizationPolicy","metadata":{"name":"p","namespace":"shop"},"spec":` + spec + `}`
	}
	tests := []struct {
		name    string
		op      admissionv1.Operation
		kind    string
		object  string
		allowed bool
		message string // in the refusal
	}{
		{"valid v1", admissionv1.Create, "AuthorizationPolicy", policy("security.istio.io/v1", `{"rules":[{"from":[{"source":{"principals":["cluster.local/ns/web/sa/frontend"]}}]}]}`), true, ""},
		{"valid v1beta1 update", admissionv1.Update, "AuthorizationPolicy", policy("security.istio.io/v1beta1", `{"action":"DENY","rules":[{"to":[{"operation":{"paths":["/admin*"]}}]}]}`), true, ""},
		{"wildcard inside a principal", admissionv1.Create, "AuthorizationPolicy", policy("security.istio.io/v1", `{"rules":[{"from":[{"source":{"principals":["cluster.local/ns/*/sa/x"]}}]}]}`), false, "wildcard"},
		{"unknown field", admissionv1.Create, "AuthorizationPolicy", policy("security.istio.io/v1", `{"rulez":[]}`), false, "rulez"},
		{"unknown action", admissionv1.Update, "AuthorizationPolicy", policy("security.istio.io/v1", `{"action":"MAYBE"}`), false, "MAYBE"},
		{"bad port in PeerAuthentication", admissionv1.Create, "PeerAuthentication", `{"apiVersion":"security.istio.io/v1","kind":"PeerAuthentication","metadata":{"name":"p","namespace":"shop"},"spec":{"selector":{"matchLabels":{"app":"a"}},"portLevelMtls":{"0":{"mode":"STRICT"}}}}`, false, "0"},
		{"a kind zmesh does not read", admissionv1.Create, "EnvoyFilter", `{"apiVersion":"networking.istio.io/v1alpha3","kind":"EnvoyFilter","metadata":{"name":"p","namespace":"shop"},"spec":{"anything":1}}`, true, ""},
		{"a deletion", admissionv1.Delete, "AuthorizationPolicy", `{}`, true, ""},
		{"not an object", admissionv1.Create, "AuthorizationPolicy", `[1]`, false, "decode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := post(t, h, tt.op, tt.kind, tt.object)
			if resp.Allowed != tt.allowed {
				t.Fatalf("allowed %v, want %v (%+v)", resp.Allowed, tt.allowed, resp.Result)
			}
			if tt.message != "" && (resp.Result == nil || !strings.Contains(resp.Result.Message, tt.message)) {
				t.Errorf("refusal %+v, want it to say %q", resp.Result, tt.message)
			}
			if !resp.Allowed && strings.Contains(resp.Result.Message, "config: ") {
				t.Errorf("refusal repeats the object's name: %q", resp.Result.Message)
			}
		})
	}
}

// TestReviewErrors: what is not a well-formed review gets an HTTP error,
// which the apiserver treats as a failed call.
func TestReviewErrors(t *testing.T) {
	h, _ := New(nil, nil)
	for name, tc := range map[string]struct {
		method, ctype, body string
		code                int
	}{
		"GET":           {http.MethodGet, "application/json", "", http.StatusMethodNotAllowed},
		"not JSON type": {http.MethodPost, "text/plain", "{}", http.StatusUnsupportedMediaType},
		"not a review":  {http.MethodPost, "application/json", `{"apiVersion":"v1","kind":"Pod"}`, http.StatusBadRequest},
		"unknown field": {http.MethodPost, "application/json", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x"},"extra":1}`, http.StatusBadRequest},
	} {
		req := httptest.NewRequest(tc.method, Path, strings.NewReader(tc.body))
		req.Header.Set("Content-Type", tc.ctype)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tc.code {
			t.Errorf("%s: status %d, want %d", name, rec.Code, tc.code)
		}
	}
}
