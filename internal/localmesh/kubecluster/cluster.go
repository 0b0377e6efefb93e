// Package kubecluster is the Kubernetes cluster of `zmesh up --kubeconfig`
// (localmesh.Cluster): before the local mesh starts, it puts the mesh
// directory's Istio resources on the cluster with server-side apply (and
// Istio's CRDs and the root namespace when they are missing), creates the
// namespaces and service accounts of the directory's workloads and the
// mesh ConfigMap; while the mesh runs, it issues each proxy's
// service-account token through TokenRequest (audience istio-ca), which
// the control plane checks with TokenReview.
//
// It creates and updates, never deletes: stopping the mesh leaves the
// cluster's objects in place.
package kubecluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/zmesh/zmesh/internal/config/kubesource"
	"github.com/zmesh/zmesh/internal/kubecrd"
	"github.com/zmesh/zmesh/internal/localmesh"
)

// FieldManager is the server-side apply field manager of what `zmesh up`
// writes, so that `kubectl get --show-managed-fields` tells it from
// `zmesh install` (manager zmesh) and from users.
const FieldManager = "zmesh-up"

// Audience is the audience of the proxies' tokens: Istio's CA audience,
// the one the control plane's TokenReview asks for.
const Audience = "istio-ca"

// DefaultTokenLifetime is the lifetime asked for the proxies' tokens, as
// a pod's projected token has by default.
const DefaultTokenLifetime = time.Hour

// Config configures a Cluster.
type Config struct {
	// Kubeconfig is the kubeconfig file; the control plane is given it too.
	Kubeconfig string
	// RootNamespace is where the mesh ConfigMap goes and where the control
	// plane keeps its CA (default istio-system).
	RootNamespace string
	// TokenLifetime is the lifetime asked for tokens (default
	// DefaultTokenLifetime; the apiserver may shorten it, never below 10
	// minutes).
	TokenLifetime time.Duration
	Logger        *slog.Logger
}

// Cluster is a cluster reached through a kubeconfig file.
type Cluster struct {
	cfg  Config
	kube kubernetes.Interface
	dyn  dynamic.Interface
}

// New connects to the cluster of cfg.Kubeconfig (no request is made yet).
func New(cfg Config) (*Cluster, error) {
	if cfg.Kubeconfig == "" {
		return nil, errors.New("kubecluster: a kubeconfig file is required")
	}
	abs, err := filepath.Abs(cfg.Kubeconfig)
	if err != nil {
		return nil, err
	}
	cfg.Kubeconfig = abs
	if cfg.RootNamespace == "" {
		cfg.RootNamespace = "istio-system"
	}
	if cfg.TokenLifetime == 0 {
		cfg.TokenLifetime = DefaultTokenLifetime
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	rc, err := kubesource.RESTConfig(cfg.Kubeconfig, false)
	if err != nil {
		return nil, err
	}
	return newForREST(cfg, rc)
}

func newForREST(cfg Config, rc *rest.Config) (*Cluster, error) {
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubecluster: %w", err)
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubecluster: %w", err)
	}
	return &Cluster{cfg: cfg, kube: kube, dyn: dyn}, nil
}

// Kubeconfig returns the kubeconfig file's absolute path.
func (c *Cluster) Kubeconfig() string { return c.cfg.Kubeconfig }

// Prepare puts on the cluster what the mesh of dir needs, in an order
// where each step finds what it needs: Istio's CRDs (only when one is
// missing: a cluster's own Istio CRDs are left as they are), the root
// namespace, the namespaces of dir's resources and workloads, the
// workloads' service accounts, the mesh ConfigMap (meshConfig, when not
// nil), then dir's Istio resources. An object the apiserver refuses stops
// Prepare with the object's file and name.
func (c *Cluster) Prepare(ctx context.Context, dir string, workloads []localmesh.Workload, meshConfig []byte) error {
	objs, err := readDir(dir)
	if err != nil {
		return err
	}
	if err := c.ensureCRDs(ctx); err != nil {
		return err
	}
	namespaces := []string{c.cfg.RootNamespace}
	for _, o := range objs {
		namespaces = append(namespaces, o.obj.GetNamespace())
	}
	for _, w := range workloads {
		namespaces = append(namespaces, w.Namespace)
	}
	seen := map[string]bool{}
	for _, ns := range namespaces {
		if ns == "" || seen[ns] {
			continue
		}
		seen[ns] = true
		if err := c.ensureNamespace(ctx, ns); err != nil {
			return err
		}
	}
	for _, w := range workloads {
		if err := c.ensureServiceAccount(ctx, w.Namespace, w.ServiceAccount); err != nil {
			return err
		}
	}
	if meshConfig != nil {
		if err := c.applyMeshConfig(ctx, meshConfig); err != nil {
			return err
		}
	}
	return c.apply(ctx, objs)
}

// ensureCRDs applies Istio's CRDs when any of them is missing or not
// established, and waits until they all are.
func (c *Cluster) ensureCRDs(ctx context.Context) error {
	names, err := kubecrd.Names()
	if err != nil {
		return err
	}
	// A short wait tells "all there" from "some missing".
	wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	err = kubecrd.WaitEstablished(wctx, c.dyn, names...)
	cancel()
	if err == nil {
		return nil
	}
	c.cfg.Logger.Info("installing Istio's CRDs: some are missing")
	return kubecrd.Apply(ctx, c.dyn)
}

// ensureNamespace creates namespace ns unless it exists.
func (c *Cluster) ensureNamespace(ctx context.Context, ns string) error {
	_, err := c.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{FieldManager: FieldManager})
	switch {
	case err == nil:
		c.cfg.Logger.Info("namespace created", "namespace", ns)
	case apierrors.IsAlreadyExists(err):
	default:
		return fmt.Errorf("kubecluster: create namespace %s: %w", ns, err)
	}
	return nil
}

// ensureServiceAccount creates ns/name unless it exists.
func (c *Cluster) ensureServiceAccount(ctx context.Context, ns, name string) error {
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
	_, err := c.kube.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{FieldManager: FieldManager})
	switch {
	case err == nil:
		c.cfg.Logger.Info("service account created", "namespace", ns, "serviceaccount", name)
	case apierrors.IsAlreadyExists(err):
	default:
		return fmt.Errorf("kubecluster: create service account %s/%s: %w", ns, name, err)
	}
	return nil
}

// applyMeshConfig writes the mesh ConfigMap (istio, key mesh) of the
// root namespace, where the control plane reads the mesh config.
func (c *Cluster) applyMeshConfig(ctx context.Context, mesh []byte) error {
	cm := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": kubesource.DefaultMeshConfigMap, "namespace": c.cfg.RootNamespace},
		"data":     map[string]any{"mesh": string(mesh)},
	}}
	gvr := corev1.SchemeGroupVersion.WithResource("configmaps")
	if _, err := c.dyn.Resource(gvr).Namespace(c.cfg.RootNamespace).Apply(ctx, cm.GetName(), cm, metav1.ApplyOptions{FieldManager: FieldManager, Force: true}); err != nil {
		return fmt.Errorf("kubecluster: apply the mesh ConfigMap %s/%s: %w", c.cfg.RootNamespace, cm.GetName(), err)
	}
	return nil
}

// apply server-side applies objs, taking over the fields it sets (a
// re-run of `zmesh up` must win over its own earlier run and over a
// kubectl apply of the same file).
func (c *Cluster) apply(ctx context.Context, objs []object) error {
	for _, o := range objs {
		_, err := c.dyn.Resource(o.gvr).Namespace(o.obj.GetNamespace()).Apply(ctx, o.obj.GetName(), o.obj, metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
		if err != nil {
			return fmt.Errorf("kubecluster: %s: apply %s %s/%s: %w", o.source, o.obj.GetKind(), o.obj.GetNamespace(), o.obj.GetName(), err)
		}
		c.cfg.Logger.Info("applied", "kind", o.obj.GetKind(), "namespace", o.obj.GetNamespace(), "name", o.obj.GetName())
	}
	return nil
}

// Token asks TokenRequest for a token of ns/sa with audience Audience,
// bound to nothing but the service account: deleting the account
// invalidates it.
func (c *Cluster) Token(ctx context.Context, ns, sa string) (string, time.Time, error) {
	secs := int64(c.cfg.TokenLifetime / time.Second)
	tr, err := c.kube.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authnv1.TokenRequest{
		Spec: authnv1.TokenRequestSpec{Audiences: []string{Audience}, ExpirationSeconds: &secs},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", time.Time{}, fmt.Errorf("kubecluster: token of %s/%s: %w", ns, sa, err)
	}
	return tr.Status.Token, tr.Status.ExpirationTimestamp.Time, nil
}

var _ localmesh.Cluster = (*Cluster)(nil)
