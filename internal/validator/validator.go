// Package validator is the control plane's validating admission webhook
// for Istio's resources, as istiod's: `kubectl apply` of an object that
// zmesh would leave out (a malformed principal, an unknown field, a port
// out of range) is refused at once, with the reason, instead of being
// stored and then ignored by the mesh. It reads each object exactly as
// the control plane reads it from the cluster (kubesource.Check), so the
// webhook and the mesh cannot disagree. Kinds zmesh does not read pass.
package validator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/zmesh/zmesh/internal/admission"
	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/config/kubesource"
)

// Path is where the control plane's webhook server answers validation
// reviews.
const Path = "/validate"

// ConfigurationName names the ValidatingWebhookConfiguration.
const ConfigurationName = "zmesh-validator"

// Groups are the API groups of Istio's resources that zmesh reads.
var Groups = []string{"security.istio.io", "networking.istio.io", "telemetry.istio.io"}

// Handler answers validation reviews. It is safe for concurrent use.
type Handler struct {
	log     *slog.Logger
	results *prometheus.CounterVec
}

// New returns a Handler; reg, when not nil, gets
// zmesh_config_validations_total{result}.
func New(reg prometheus.Registerer, log *slog.Logger) (*Handler, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Handler{log: log, results: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "zmesh_config_validations_total",
		Help: "Istio resource admission reviews by outcome: valid, invalid (refused with the reason), skipped (a kind or operation zmesh does not check), error (not a well-formed review).",
	}, []string{"result"})}
	if reg != nil {
		if err := reg.Register(h.results); err != nil {
			return nil, fmt.Errorf("validator: metrics: %w", err)
		}
	}
	return h, nil
}

// ServeHTTP answers a POST carrying an AdmissionReview.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := admission.Serve(w, r, h.review); err != nil {
		h.results.WithLabelValues("error").Inc()
		h.log.Warn("bad admission review", "err", err)
	}
}

// review decides one request: creations and updates of the kinds zmesh
// reads are checked; deletions, status and other kinds pass.
func (h *Handler) review(_ context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	if (req.Operation != admissionv1.Create && req.Operation != admissionv1.Update) || req.SubResource != "" {
		h.results.WithLabelValues("skipped").Inc()
		return &admissionv1.AdmissionResponse{Allowed: true}
	}
	if len(req.Object.Raw) == 0 {
		h.results.WithLabelValues("error").Inc()
		return admission.Deny(http.StatusBadRequest, "zmesh: admission review without an object")
	}
	read, warnings, err := kubesource.Check(req.Object.Raw)
	switch {
	case err != nil:
		h.results.WithLabelValues("invalid").Inc()
		h.log.Info("Istio resource refused", "kind", req.Kind.Kind, "namespace", req.Namespace, "name", req.Name, "user", req.UserInfo.Username, "err", err)
		return admission.Deny(http.StatusBadRequest, "zmesh: configuration is invalid: "+message(err))
	case !read:
		h.results.WithLabelValues("skipped").Inc()
		return &admissionv1.AdmissionResponse{Allowed: true}
	}
	h.results.WithLabelValues("valid").Inc()
	resp := &admissionv1.AdmissionResponse{Allowed: true}
	for _, w := range warnings {
		resp.Warnings = append(resp.Warnings, w.Message)
	}
	return resp
}

// message is err without the "config: KIND NS/NAME:" prefix: the
// apiserver's refusal already names the object.
func message(err error) string {
	var se *config.SourceError
	if errors.As(err, &se) && se.Err != nil {
		return se.Err.Error()
	}
	return err.Error()
}

// Configuration is the ValidatingWebhookConfiguration of the webhook at
// client, refusing or admitting, when the webhook cannot be reached, as
// policy says: Fail for a control plane in the cluster once it serves
// (an invalid object is never stored), Ignore while none may answer
// (install, before the first control plane is up; a local `zmesh up
// --kubeconfig`, which must not block the cluster's Istio edits once it
// stops). Either way the control plane still refuses at read time what
// it would not have admitted.
func Configuration(client admissionregistrationv1.WebhookClientConfig, policy admissionregistrationv1.FailurePolicyType) *admissionregistrationv1.ValidatingWebhookConfiguration {
	return &admissionregistrationv1.ValidatingWebhookConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingWebhookConfiguration"},
		ObjectMeta: metav1.ObjectMeta{Name: ConfigurationName, Labels: map[string]string{"app.kubernetes.io/part-of": "zmesh"}},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name:         "validation.zmesh.dev",
			ClientConfig: client,
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
				Rule: admissionregistrationv1.Rule{
					APIGroups: Groups, APIVersions: []string{"*"}, Resources: []string{"*"},
					Scope: ptr.To(admissionregistrationv1.AllScopes),
				},
			}},
			FailurePolicy: ptr.To(policy),
			MatchPolicy:   ptr.To(admissionregistrationv1.Equivalent),
			// Every namespace and object, spelled out as the apiserver
			// stores it, so that a registration compares equal to it.
			NamespaceSelector:       &metav1.LabelSelector{},
			ObjectSelector:          &metav1.LabelSelector{},
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
			TimeoutSeconds:          ptr.To[int32](10),
			AdmissionReviewVersions: []string{"v1"},
		}},
	}
}
