// Package admission serves Kubernetes admission webhooks: it reads an
// AdmissionReview (admission.k8s.io/v1) from an HTTP request, strictly and
// bounded, hands its request to a decision function and writes the
// review back with the response. The control plane's two webhooks, the
// sidecar injector and the Istio config validator, are decision functions
// over it.
package admission

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kjson "sigs.k8s.io/json"
)

// MaxBody bounds an AdmissionReview. etcd stores objects up to 1.5 MiB;
// a review carries the object and, for an update, its old version, in
// JSON not much larger.
const MaxBody = 6 << 20

// Decide answers one admission request. It must always return a
// response; the request's UID is filled in by Serve.
type Decide func(context.Context, *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse

// Serve answers a POST carrying an AdmissionReview with decide's
// response. A request that is not a well-formed review gets an HTTP error,
// which the apiserver treats as a failed call (under failurePolicy Fail
// the object is refused); that error is also returned, for the caller's
// logs and metrics. A review decide sees always gets 200 and its response.
func Serve(w http.ResponseWriter, r *http.Request, decide Decide) error {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "webhook: POST an AdmissionReview", http.StatusMethodNotAllowed)
		return fmt.Errorf("method %s", r.Method)
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		http.Error(w, "webhook: Content-Type must be application/json", http.StatusUnsupportedMediaType)
		return fmt.Errorf("content type %q", r.Header.Get("Content-Type"))
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		http.Error(w, fmt.Sprintf("webhook: read review: %v", err), http.StatusRequestEntityTooLarge)
		return fmt.Errorf("read review: %w", err)
	}
	review, err := DecodeReview(body)
	if err != nil {
		http.Error(w, "webhook: "+err.Error(), http.StatusBadRequest)
		return err
	}
	resp := decide(r.Context(), review.Request)
	resp.UID = review.Request.UID
	out, err := json.Marshal(admissionv1.AdmissionReview{TypeMeta: review.TypeMeta, Response: resp})
	if err != nil {
		http.Error(w, "webhook: encode response", http.StatusInternalServerError)
		return fmt.Errorf("encode response: %w", err)
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
	return nil
}

// Deny is a refusal with an HTTP-like code and the message the apiserver
// shows the user ("admission webhook ... denied the request: MSG").
func Deny(code int32, msg string) *admissionv1.AdmissionResponse {
	return &admissionv1.AdmissionResponse{Allowed: false, Result: &metav1.Status{
		Status: metav1.StatusFailure, Code: code, Message: msg, Reason: metav1.StatusReasonBadRequest,
	}}
}

// DecodeReview parses an AdmissionReview strictly: admission.k8s.io/v1
// only, no unknown or duplicate fields in the review and its request, a
// request with a uid, nothing after the JSON value. The review's envelope
// is versioned and ships with the apiserver release zmesh is built for; a
// field it does not know is a field whose meaning it cannot honour.
func DecodeReview(data []byte) (*admissionv1.AdmissionReview, error) {
	var review admissionv1.AdmissionReview
	strict, err := kjson.UnmarshalStrict(data, &review, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return nil, fmt.Errorf("decode AdmissionReview: %w", err)
	}
	if len(strict) > 0 {
		return nil, fmt.Errorf("decode AdmissionReview: %w", errors.Join(strict...))
	}
	if review.APIVersion != admissionv1.SchemeGroupVersion.String() || review.Kind != "AdmissionReview" {
		return nil, fmt.Errorf("want an admission.k8s.io/v1 AdmissionReview, got %q %q", review.APIVersion, review.Kind)
	}
	if review.Request == nil {
		return nil, errors.New("AdmissionReview without a request")
	}
	if review.Request.UID == "" {
		return nil, errors.New("AdmissionReview request without a uid")
	}
	if review.Response != nil {
		return nil, errors.New("AdmissionReview request carries a response")
	}
	return &review, nil
}
