// Package webhook serves the sidecar injector as a Kubernetes mutating
// admission webhook: it reads an AdmissionReview (admission.k8s.io/v1) for
// a pod creation, looks up the labels of the pod's namespace, asks package
// inject what to do, and answers with the JSON patch, a refusal, or
// nothing to change. It is an http.Handler; the control plane serves it
// over TLS with a certificate from the mesh CA.
package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kjson "sigs.k8s.io/json"

	"github.com/zmesh/zmesh/internal/admission"
	"github.com/zmesh/zmesh/internal/inject"
)

// NamespaceLabels returns the labels of the named namespace. An error
// refuses the pod: without the labels the injector cannot tell whether
// it must inject.
type NamespaceLabels func(ctx context.Context, name string) (map[string]string, error)

// Config configures a Handler.
type Config struct {
	// Settings is what to inject; it must have been validated.
	Settings *inject.Settings
	// Namespaces looks up namespace labels. Required.
	Namespaces NamespaceLabels
	// Timeout bounds the namespace lookup; default 5s (the apiserver gives
	// the webhook 10s in all).
	Timeout time.Duration
	// Registerer, when set, gets zmesh_injections_total{result}.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Handler answers admission reviews for pods. It is safe for concurrent
// use.
type Handler struct {
	cfg     Config
	results *prometheus.CounterVec
}

// New returns a Handler.
func New(cfg Config) (*Handler, error) {
	if cfg.Settings == nil || cfg.Namespaces == nil {
		return nil, errors.New("webhook: settings and a namespace lookup are required")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	h := &Handler{cfg: cfg, results: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "zmesh_injections_total",
		Help: "Pod admission reviews by outcome: injected, skipped (not selected), refused (bad annotations or labels), error (the review could not be decided).",
	}, []string{"result"})}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(h.results); err != nil {
			return nil, fmt.Errorf("webhook: metrics: %w", err)
		}
	}
	return h, nil
}

var podKind = metav1.GroupVersionKind{Group: "", Version: "v1", Kind: "Pod"}

// ServeHTTP answers POST requests carrying an AdmissionReview (see
// admission.Serve): a pod creation gets the patch, a refusal with the
// reason, or an allowance without change.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := admission.Serve(w, r, h.review); err != nil {
		h.results.WithLabelValues("error").Inc()
		h.cfg.Logger.Warn("bad admission review", "err", err)
	}
}

// review decides one request.
func (h *Handler) review(ctx context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	log := h.cfg.Logger.With("namespace", req.Namespace, "uid", req.UID)
	// Only pod creations are injected; anything else the apiserver is
	// configured to send passes unchanged.
	if req.Kind != podKind || req.SubResource != "" || req.Operation != admissionv1.Create {
		h.results.WithLabelValues("skipped").Inc()
		return &admissionv1.AdmissionResponse{Allowed: true}
	}
	pod, err := DecodePod(req.Object.Raw)
	if err != nil {
		h.results.WithLabelValues("error").Inc()
		log.Warn("undecodable pod in admission review", "err", err)
		return admission.Deny(http.StatusBadRequest, err.Error())
	}
	name := pod.Name
	if name == "" {
		name = pod.GenerateName + "*"
	}
	log = log.With("pod", name)
	lctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
	defer cancel()
	labels, err := h.cfg.Namespaces(lctx, req.Namespace)
	if err != nil {
		h.results.WithLabelValues("error").Inc()
		log.Warn("cannot read the pod's namespace; pod refused", "err", err)
		return admission.Deny(http.StatusInternalServerError, fmt.Sprintf("zmesh sidecar injector: cannot read namespace %s: %v", req.Namespace, err))
	}
	res, err := h.cfg.Settings.Pod(pod, inject.Namespace{Name: req.Namespace, Labels: labels})
	if err != nil {
		h.results.WithLabelValues("refused").Inc()
		log.Info("pod refused", "err", err)
		return admission.Deny(http.StatusBadRequest, "zmesh sidecar injector: "+err.Error())
	}
	if !res.Inject {
		h.results.WithLabelValues("skipped").Inc()
		log.Debug("pod not injected", "reason", res.Reason)
		return &admissionv1.AdmissionResponse{Allowed: true}
	}
	patch, err := json.Marshal(res.Patch)
	if err != nil {
		h.results.WithLabelValues("error").Inc()
		return admission.Deny(http.StatusInternalServerError, "zmesh sidecar injector: encode patch: "+err.Error())
	}
	h.results.WithLabelValues("injected").Inc()
	log.Info("pod injected", "reason", res.Reason)
	pt := admissionv1.PatchTypeJSONPatch
	return &admissionv1.AdmissionResponse{Allowed: true, Patch: patch, PatchType: &pt}
}

// DecodePod parses the pod of a review. Duplicate fields are refused
// (the apiserver never sends them, and they could make this decoder and
// another read different values); fields this build does not know are
// accepted, since the patch only adds and never rewrites what it did not
// read.
func DecodePod(raw []byte) (*corev1.Pod, error) {
	if len(raw) == 0 {
		return nil, errors.New("admission review without an object")
	}
	var pod corev1.Pod
	strict, err := kjson.UnmarshalStrict(raw, &pod, kjson.DisallowDuplicateFields)
	if err != nil {
		return nil, fmt.Errorf("decode pod: %w", err)
	}
	if len(strict) > 0 {
		return nil, fmt.Errorf("decode pod: %w", errors.Join(strict...))
	}
	if pod.APIVersion != "v1" || pod.Kind != "Pod" {
		return nil, fmt.Errorf("object is %q %q, want a v1 Pod", pod.APIVersion, pod.Kind)
	}
	return &pod, nil
}
