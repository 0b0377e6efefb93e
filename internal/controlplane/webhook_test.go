package controlplane

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/zmesh/zmesh/internal/ca"
	"github.com/zmesh/zmesh/internal/inject"
	"github.com/zmesh/zmesh/internal/kubetest"
	"github.com/zmesh/zmesh/internal/pemcert"
)

// runControlPlane runs a control plane with cfg until the returned stop
// is called; stop waits for Run to return.
func runControlPlane(t *testing.T, cfg Config) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg) }()
	var once bool
	stop = func() {
		if once {
			return
		}
		once = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("control plane: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("control plane did not stop")
		}
	}
	t.Cleanup(stop)
	return stop
}

func webhookConfig(t *testing.T, kubeconfig, register string) Config {
	return Config{
		DataDir:         t.TempDir(),
		Listen:          "127.0.0.1:0",
		Kubeconfig:      kubeconfig,
		Webhook:         "127.0.0.1:0",
		WebhookRegister: register,
		Injection:       inject.Settings{Image: "zmesh/zmesh:test"},
		Logger:          slog.New(slog.DiscardHandler),
	}
}

func createNamespace(t *testing.T, cs kubernetes.Interface, name string, labels map[string]string) {
	t.Helper()
	ctx := context.Background()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// No controller manager runs: the default service account, which
	// the apiserver's admission requires of a pod, is ours to create.
	if _, err := cs.CoreV1().ServiceAccounts(name).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func testPod(name string, labels, annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, Annotations: annotations},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example/app:1"}}},
	}
}

// waitInjecting waits until the apiserver sends pods of ns to the
// webhook: it picks up a new MutatingWebhookConfiguration within a second
// or so. It probes with dry-run creations, which call the webhook
// (sideEffects None) and store nothing.
func waitInjecting(t *testing.T, cs kubernetes.Interface, ns string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		p, err := cs.CoreV1().Pods(ns).Create(context.Background(), testPod("probe", nil, nil), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err == nil && len(p.Spec.InitContainers) > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the apiserver does not call the webhook: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestWebhookInjectsThroughAPIServer registers the injector with a url
// client config against a real kube-apiserver and creates pods through
// the API: the apiserver calls the webhook, and the stored pods are
// injected, untouched or refused as Istio's rules and the annotations
// say. With the control plane stopped, pods in a mesh namespace cannot be
// created at all (failurePolicy Fail), while other namespaces are
// unaffected.
func TestWebhookInjectsThroughAPIServer(t *testing.T) {
	c := kubetest.New(t)
	cs := c.Client(t)
	ctx := context.Background()
	if err := prepareCluster(c); err != nil {
		t.Fatal(err)
	}
	createNamespace(t, cs, "mesh", map[string]string{inject.LabelInjection: "enabled"})
	createNamespace(t, cs, "plain", nil)

	cfg := webhookConfig(t, c.Kubeconfig, RegisterURL)
	stop := runControlPlane(t, cfg)
	waitInjecting(t, cs, "mesh")

	t.Run("registered with the mesh root and failurePolicy Fail", func(t *testing.T) {
		mwc, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, inject.WebhookConfigurationName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		root, err := pemcert.Parse(mustRead(t, cfg.DataDir+"/root-cert.pem"))
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range mwc.Webhooks {
			if w.ClientConfig.URL == nil || !strings.HasPrefix(*w.ClientConfig.URL, "https://127.0.0.1:") || !strings.HasSuffix(*w.ClientConfig.URL, "/inject") {
				t.Errorf("%s: client config %+v", w.Name, w.ClientConfig)
			}
			if !bytes.Equal(w.ClientConfig.CABundle, pemcert.Encode(root...)) {
				t.Errorf("%s: caBundle is not the mesh root", w.Name)
			}
			if *w.FailurePolicy != admissionregistrationv1.Fail {
				t.Errorf("%s: failurePolicy %s", w.Name, *w.FailurePolicy)
			}
		}
	})

	t.Run("pod in a labelled namespace is stored injected", func(t *testing.T) {
		if _, err := cs.CoreV1().Pods("mesh").Create(ctx, testPod("web", map[string]string{"app": "web"}, nil), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		p, err := cs.CoreV1().Pods("mesh").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ic := p.Spec.InitContainers
		if len(ic) != 2 || ic[0].Name != inject.InitContainer || ic[1].Name != inject.ProxyContainer {
			t.Fatalf("init containers %v", ic)
		}
		if rp := ic[1].RestartPolicy; rp == nil || *rp != corev1.ContainerRestartPolicyAlways {
			t.Errorf("zmesh-proxy restartPolicy %v, want Always", rp)
		}
		if caps := ic[0].SecurityContext.Capabilities.Add; len(caps) != 2 {
			t.Errorf("zmesh-init capabilities %v", caps)
		}
		var token *corev1.ServiceAccountTokenProjection
		for _, v := range p.Spec.Volumes {
			if v.Name == inject.TokenVolume && v.Projected != nil {
				token = v.Projected.Sources[0].ServiceAccountToken
			}
		}
		if token == nil || token.Audience != "istio-ca" {
			t.Errorf("token volume %+v", token)
		}
		if p.Labels[inject.LabelTLSMode] != "istio" || p.Labels[inject.LabelCanonicalName] != "web" || p.Annotations[inject.AnnotationStatus] == "" {
			t.Errorf("labels %v, annotations %v", p.Labels, p.Annotations)
		}
		if len(p.Spec.Containers) != 1 || p.Spec.Containers[0].Name != "app" {
			t.Errorf("app containers changed: %v", p.Spec.Containers)
		}
	})

	t.Run("opted-out pod is stored untouched", func(t *testing.T) {
		p, err := cs.CoreV1().Pods("mesh").Create(ctx, testPod("legacy", map[string]string{inject.LabelInject: "false"}, nil), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// The apiserver's ServiceAccount admission adds its own
		// kube-api-access volume; injection's would be istio-token.
		for _, v := range p.Spec.Volumes {
			if v.Name == inject.TokenVolume {
				t.Errorf("opted-out pod got the token volume")
			}
		}
		if len(p.Spec.InitContainers) != 0 || p.Labels[inject.LabelTLSMode] != "" || p.Annotations[inject.AnnotationStatus] != "" {
			t.Errorf("opted-out pod was changed: %v %v", p.Spec.InitContainers, p.Labels)
		}
	})

	t.Run("pod in an unlabelled namespace is stored untouched", func(t *testing.T) {
		p, err := cs.CoreV1().Pods("plain").Create(ctx, testPod("app", nil, nil), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Spec.InitContainers) != 0 {
			t.Errorf("pod in an unlabelled namespace was injected")
		}
	})

	t.Run("pod opting in from an unlabelled namespace is injected", func(t *testing.T) {
		p, err := cs.CoreV1().Pods("plain").Create(ctx, testPod("tool", map[string]string{inject.LabelInject: "true"}, nil), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Spec.InitContainers) != 2 {
			t.Errorf("opted-in pod not injected")
		}
	})

	t.Run("malformed annotation refuses the pod with the reason", func(t *testing.T) {
		_, err := cs.CoreV1().Pods("mesh").Create(ctx, testPod("typo", nil, map[string]string{inject.AnnotationExcludeOutboundPorts: "5432;6379"}), metav1.CreateOptions{})
		if err == nil || !strings.Contains(err.Error(), "excludeOutboundPorts") {
			t.Fatalf("err = %v, want a refusal naming the annotation", err)
		}
	})

	stop()
	t.Run("webhook down: pods in a mesh namespace are refused", func(t *testing.T) {
		_, err := cs.CoreV1().Pods("mesh").Create(ctx, testPod("while-down", nil, nil), metav1.CreateOptions{})
		if err == nil || !strings.Contains(err.Error(), "failed calling webhook") {
			t.Fatalf("err = %v, want the apiserver's webhook failure", err)
		}
		if _, err := cs.CoreV1().Pods("mesh").Get(ctx, "while-down", metav1.GetOptions{}); err == nil {
			t.Error("the pod was stored")
		}
		if _, err := cs.CoreV1().Pods("plain").Create(ctx, testPod("unaffected", nil, nil), metav1.CreateOptions{}); err != nil {
			t.Errorf("pod in an unlabelled namespace: %v", err)
		}
	})

	t.Run("registering an unchanged configuration is a no-op", func(t *testing.T) {
		c2 := cfg
		if err := c2.Validate(); err != nil {
			t.Fatal(err)
		}
		a, err := ca.Load(ca.Config{DataDir: c2.DataDir, TrustDomain: spiffeid.RequireTrustDomainFromString(c2.TrustDomain)})
		if err != nil {
			t.Fatal(err)
		}
		w, err := newWebhook(c2, a, prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		if err := w.listen(); err != nil {
			t.Fatal(err)
		}
		defer w.lis.Close()
		for i, want := range []bool{true, false} {
			changed, err := w.register(ctx)
			if err != nil || changed != want {
				t.Errorf("register #%d: changed %v, %v; want %v", i+1, changed, err, want)
			}
		}
	})
}

// TestWebhookServiceRegistrationKeepsCABundle starts from the
// configuration `zmesh install` creates (service client config, no
// caBundle) and checks that a control plane with RegisterService fills in
// the mesh root, leaving the client config alone.
func TestWebhookServiceRegistrationKeepsCABundle(t *testing.T) {
	c := kubetest.New(t)
	cs := c.Client(t)
	ctx := context.Background()
	if err := prepareCluster(c); err != nil {
		t.Fatal(err)
	}
	s := inject.Settings{Image: "zmesh/zmesh:test"}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	svc := admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{
		Namespace: "istio-system", Name: WebhookService, Path: ptrTo(inject.WebhookPath), Port: ptrTo[int32](443),
	}}
	if _, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, s.WebhookConfiguration(svc), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg := webhookConfig(t, c.Kubeconfig, RegisterService)
	runControlPlane(t, cfg)
	deadline := time.Now().Add(20 * time.Second)
	for {
		mwc, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, inject.WebhookConfigurationName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		done := true
		for _, w := range mwc.Webhooks {
			if w.ClientConfig.Service == nil || w.ClientConfig.Service.Name != WebhookService || w.ClientConfig.URL != nil {
				t.Fatalf("%s: client config changed: %+v", w.Name, w.ClientConfig)
			}
			if !bytes.Contains(w.ClientConfig.CABundle, []byte("BEGIN CERTIFICATE")) {
				done = false
			}
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("caBundle not filled in")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func ptrTo[T any](v T) *T { return &v }

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
