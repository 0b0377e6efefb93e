package controlplane

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"github.com/zmesh/zmesh/internal/config/kubesource"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/zmesh/zmesh/internal/ca"
	"github.com/zmesh/zmesh/internal/inject"
	"github.com/zmesh/zmesh/internal/inject/webhook"
	"github.com/zmesh/zmesh/internal/pemcert"
	"github.com/zmesh/zmesh/internal/validator"
)

// How the control plane registers its injection webhook
// (Config.WebhookRegister).
const (
	// RegisterNone leaves the MutatingWebhookConfiguration alone.
	RegisterNone = ""
	// RegisterURL creates or replaces zmesh-sidecar-injector with a url
	// client config pointing at the webhook's own address: the local loop
	// (`zmesh up --kubeconfig`), where the control plane runs outside the
	// cluster.
	RegisterURL = "url"
	// RegisterService keeps the caBundle of the zmesh-sidecar-injector that
	// `zmesh install` created (service client config) equal to the mesh's
	// roots, through root rotations: the control plane in the cluster.
	RegisterService = "service"
)

// WebhookService is the Service `zmesh install` puts in front of the
// control plane; the webhook's certificate names it.
const WebhookService = "zmesh"

// webhookServer is the sidecar injection webhook: an HTTPS server with a
// certificate from the mesh CA (renewed as the gRPC port's is), serving
// POST /inject, and the loop that keeps its registration current.
type webhookServer struct {
	cfg       Config
	authority *ca.Authority
	kube      kubernetes.Interface
	srv       *http.Server
	lis       net.Listener
}

// newWebhook builds the webhook's handler and its Kubernetes client. It
// binds no port.
func newWebhook(cfg Config, authority *ca.Authority, metrics prometheus.Registerer) (*webhookServer, error) {
	rc, err := cfg.restConfig()
	if err == nil && rc == nil {
		// A webhook without Kubernetes mode: the pod's own cluster.
		rc, err = kubesource.RESTConfig("", true)
	}
	if err != nil {
		return nil, fmt.Errorf("controlplane: webhook needs the Kubernetes API (--kubeconfig, or in-cluster): %w", err)
	}
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("controlplane: webhook: %w", err)
	}
	settings := cfg.Injection
	h, err := webhook.New(webhook.Config{
		Settings:   &settings,
		Namespaces: namespaceLabels(kube),
		Registerer: metrics,
		Logger:     cfg.Logger.With("component", "webhook"),
	})
	if err != nil {
		return nil, err
	}
	v, err := validator.New(metrics, cfg.Logger.With("component", "validator"))
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("POST "+inject.WebhookPath, h)
	mux.Handle("POST "+validator.Path, v)
	return &webhookServer{
		cfg: cfg, authority: authority, kube: kube,
		srv: &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       15 * time.Second,
			WriteTimeout:      15 * time.Second,
			IdleTimeout:       90 * time.Second,
			MaxHeaderBytes:    64 << 10,
			ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug),
		},
	}, nil
}

// namespaceLabels reads a namespace's labels from the apiserver, once per
// review: pod creations are rare next to the cost of a GET, and the
// answer is never stale.
func namespaceLabels(kube kubernetes.Interface) webhook.NamespaceLabels {
	return func(ctx context.Context, name string) (map[string]string, error) {
		ns, err := kube.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		return ns.Labels, nil
	}
}

// listen binds the webhook's port and sets up TLS. The certificate names
// the webhook's Service (zmesh and istiod in the root namespace, what the
// apiserver dials with a service client config) and the bound address.
func (w *webhookServer) listen() error {
	lis, err := net.Listen("tcp", w.cfg.Webhook)
	if err != nil {
		return fmt.Errorf("controlplane: webhook listen: %w", err)
	}
	ns := w.cfg.RootNamespace
	host, _, _ := net.SplitHostPort(lis.Addr().String())
	tlsCfg, err := ca.ServerTLSConfig(w.authority, WebhookService+"."+ns+".svc", "istiod."+ns+".svc", host)
	if err != nil {
		lis.Close()
		return err
	}
	// The apiserver authenticates the webhook by its certificate; it
	// sends none of its own.
	tlsCfg.ClientAuth, tlsCfg.ClientCAs, tlsCfg.GetConfigForClient = tls.NoClientCert, nil, nil
	w.srv.TLSConfig = tlsCfg
	w.lis = lis
	return nil
}

// start serves the webhook and, when configured, keeps its registration
// current, in goroutines owned by wg. A serving failure goes to errc.
func (w *webhookServer) start(ctx context.Context, wg *sync.WaitGroup, errc chan<- error) {
	w.cfg.Logger.Info("injection webhook serving", "webhook", w.lis.Addr().String(), "register", w.cfg.WebhookRegister)
	wg.Go(func() {
		if err := w.srv.ServeTLS(w.lis, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("controlplane: webhook: %w", err)
		}
	})
	if w.cfg.WebhookRegister != RegisterNone {
		wg.Go(func() { w.keepRegistered(ctx) })
	}
}

// shutdown stops the webhook server, giving in-flight reviews 2s.
func (w *webhookServer) shutdown() {
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = w.srv.Shutdown(sctx)
}

// url is the address of the webhook's path as the apiserver dials it
// with a url client config: the bound address, loopback for a wildcard
// one.
func (w *webhookServer) url(path string) string {
	host, port, _ := net.SplitHostPort(w.lis.Addr().String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "https://" + net.JoinHostPort(host, port) + path
}

// keepRegistered registers the webhook now, again whenever the CA's
// bundle changes (the apiserver must trust the roots the serving
// certificate chains to), and every minute in case someone edited it,
// retrying failures with back-off, until ctx is done. The configuration
// is left in place on exit: with failurePolicy Fail, pods in mesh
// namespaces are refused while no injector answers, rather than admitted
// without a proxy; `zmesh uninstall` removes it.
func (w *webhookServer) keepRegistered(ctx context.Context) {
	log := w.cfg.Logger.With("component", "webhook", "configuration", inject.WebhookConfigurationName)
	const every, maxBackoff = time.Minute, 30 * time.Second
	backoff := time.Second
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		updated := w.authority.Updated()
		changed, err := w.register(ctx)
		wait := every
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return
			}
			log.Warn("cannot register the injection webhook; retrying", "err", err, "in", backoff)
			wait, backoff = backoff, min(2*backoff, maxBackoff)
		case changed:
			log.Info("injection webhook registered", "mode", w.cfg.WebhookRegister, "url", w.urlIfAny())
			backoff = time.Second
		default:
			backoff = time.Second
		}
		t.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-updated:
		case <-t.C:
		}
	}
}

func (w *webhookServer) urlIfAny() string {
	if w.cfg.WebhookRegister == RegisterURL {
		return w.url(inject.WebhookPath)
	}
	return ""
}

// register brings both webhook configurations in line with the mode, and
// says whether it changed anything.
func (w *webhookServer) register(ctx context.Context) (bool, error) {
	bundle := pemcert.Encode(w.authority.Bundle()...)
	injector, err := w.registerInjector(ctx, bundle)
	if err != nil {
		return injector, err
	}
	valid, err := w.registerValidator(ctx, bundle)
	return injector || valid, err
}

// registerValidator brings the ValidatingWebhookConfiguration in line:
// with a url client config and failurePolicy Ignore for a control plane
// outside the cluster (which must not block the cluster's Istio edits
// once it stops); for the one install created, the mesh's roots as
// caBundle and, now that this control plane serves it, failurePolicy
// Fail, as istiod does. A cluster installed before the validator has
// none, and keeps none.
func (w *webhookServer) registerValidator(ctx context.Context, bundle []byte) (bool, error) {
	api := w.kube.AdmissionregistrationV1().ValidatingWebhookConfigurations()
	cur, err := api.Get(ctx, validator.ConfigurationName, metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return false, err
	}
	switch w.cfg.WebhookRegister {
	case RegisterURL:
		want := validator.Configuration(admissionregistrationv1.WebhookClientConfig{
			URL: ptr.To(w.url(validator.Path)), CABundle: bundle,
		}, admissionregistrationv1.Ignore)
		if apierrors.IsNotFound(err) {
			_, err := api.Create(ctx, want, metav1.CreateOptions{FieldManager: "zmesh"})
			return err == nil, err
		}
		if equality.Semantic.DeepEqual(cur.Webhooks, want.Webhooks) {
			return false, nil
		}
		want.ResourceVersion = cur.ResourceVersion
		_, err := api.Update(ctx, want, metav1.UpdateOptions{FieldManager: "zmesh"})
		return err == nil, err
	case RegisterService:
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		changed := false
		for i := range cur.Webhooks {
			hook := &cur.Webhooks[i]
			if !bytes.Equal(hook.ClientConfig.CABundle, bundle) {
				hook.ClientConfig.CABundle = bundle
				changed = true
			}
			if hook.FailurePolicy == nil || *hook.FailurePolicy != admissionregistrationv1.Fail {
				hook.FailurePolicy = ptr.To(admissionregistrationv1.Fail)
				changed = true
			}
		}
		if !changed {
			return false, nil
		}
		_, err := api.Update(ctx, cur, metav1.UpdateOptions{FieldManager: "zmesh"})
		return err == nil, err
	}
	return false, nil
}

// registerInjector brings the MutatingWebhookConfiguration in line with
// the mode, and says whether it changed anything.
func (w *webhookServer) registerInjector(ctx context.Context, bundle []byte) (bool, error) {
	api := w.kube.AdmissionregistrationV1().MutatingWebhookConfigurations()
	cur, err := api.Get(ctx, inject.WebhookConfigurationName, metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return false, err
	}
	switch w.cfg.WebhookRegister {
	case RegisterURL:
		want := w.cfg.Injection.WebhookConfiguration(admissionregistrationv1.WebhookClientConfig{
			URL: ptr.To(w.url(inject.WebhookPath)), CABundle: bundle,
		})
		if apierrors.IsNotFound(err) {
			_, err := api.Create(ctx, want, metav1.CreateOptions{FieldManager: "zmesh"})
			return err == nil, err
		}
		if equality.Semantic.DeepEqual(cur.Webhooks, want.Webhooks) {
			return false, nil
		}
		want.ResourceVersion = cur.ResourceVersion
		_, err := api.Update(ctx, want, metav1.UpdateOptions{FieldManager: "zmesh"})
		return err == nil, err
	case RegisterService:
		if apierrors.IsNotFound(err) {
			return false, fmt.Errorf("%s not found (zmesh install creates it)", inject.WebhookConfigurationName)
		}
		changed := false
		for i := range cur.Webhooks {
			if !bytes.Equal(cur.Webhooks[i].ClientConfig.CABundle, bundle) {
				cur.Webhooks[i].ClientConfig.CABundle = bundle
				changed = true
			}
		}
		if !changed {
			return false, nil
		}
		_, err := api.Update(ctx, cur, metav1.UpdateOptions{FieldManager: "zmesh"})
		return err == nil, err
	}
	return false, fmt.Errorf("unknown webhook registration %q", w.cfg.WebhookRegister)
}

// validateWebhook checks the webhook's part of c and fills in defaults.
func (c *Config) validateWebhook() error {
	switch c.WebhookRegister {
	case RegisterNone, RegisterURL, RegisterService:
	default:
		return fmt.Errorf("controlplane: webhook registration %q: want %q or %q", c.WebhookRegister, RegisterURL, RegisterService)
	}
	if c.Webhook == "" {
		if c.WebhookRegister != RegisterNone {
			return errors.New("controlplane: registering the webhook needs a webhook address")
		}
		return nil
	}
	if c.Injection.TrustDomain == "" {
		c.Injection.TrustDomain = c.TrustDomain
	}
	if c.Injection.ClusterDomain == "" {
		c.Injection.ClusterDomain = c.DNSDomain
	}
	if err := c.Injection.Validate(); err != nil {
		return fmt.Errorf("controlplane: %w", err)
	}
	// The control plane's own pods must never wait for it.
	if !slices.Contains(c.Injection.ExcludedNamespaces, c.RootNamespace) {
		c.Injection.ExcludedNamespaces = append(slices.Clone(c.Injection.ExcludedNamespaces), c.RootNamespace)
	}
	return nil
}
