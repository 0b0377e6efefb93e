// Package kubebundle publishes the mesh's trust bundle in Kubernetes, where
// workloads and other tools look for it: the ConfigMap istio-ca-root-cert
// (key root-cert.pem) in every namespace, as istiod does, which is what
// injected proxies mount; and a ClusterTrustBundle, where that API is
// served (certificates.k8s.io v1, else v1beta1), for anything that mounts
// roots through a clusterTrustBundle projection. During a root rotation the bundle holds every trusted root.
//
// A namespace informer drives it: a new namespace gets the ConfigMap at
// once, an edited or deleted ConfigMap is put back, and every change of the
// CA's bundle reaches them all. Run it on one replica at a time (package
// ca/kubelease).
package kubebundle

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/zmesh/zmesh/internal/pemcert"
)

// Names of what is published.
const (
	// ConfigMapName and ConfigMapKey are Istio's.
	ConfigMapName = "istio-ca-root-cert"
	ConfigMapKey  = "root-cert.pem"
	// DefaultClusterTrustBundle names the ClusterTrustBundle. It has no
	// signer (a signer-linked one needs "attest" on a signer name), and a
	// signer-less name may hold no colon.
	DefaultClusterTrustBundle = "zmesh-root-ca"
)

// ignored are namespaces no workload of the mesh runs in, skipped as
// istiod skips them.
var ignored = []string{"kube-system", "kube-public", "kube-node-lease", "local-path-storage"}

// ctbKey is the queue key of the ClusterTrustBundle; namespace names cannot
// be empty.
const ctbKey = ""

// Config configures a Publisher.
type Config struct {
	// Client reaches the cluster. Required. The account needs list and
	// watch on namespaces, and get, list, watch, create and update on
	// configmaps and clustertrustbundles.
	Client kubernetes.Interface
	// Roots returns the trust bundle to publish; Updated returns a channel
	// closed at its next change (ca.Authority's Bundle and Updated).
	// Required.
	Roots   func() []*x509.Certificate
	Updated func() <-chan struct{}
	// ClusterTrustBundle names it; default DefaultClusterTrustBundle.
	ClusterTrustBundle string
	// Logger; default discards.
	Logger *slog.Logger
}

// Publisher keeps the bundle published. Run drives it.
type Publisher struct {
	cfg   Config
	log   *slog.Logger
	queue workqueue.TypedRateLimitingInterface[string]

	namespaces cache.Indexer
	configMaps cache.Indexer
	bundles    cache.Indexer // nil when ClusterTrustBundle is not served
	ctbAPI     trustBundles
}

// New returns a Publisher for cfg.
func New(cfg Config) (*Publisher, error) {
	if cfg.Client == nil || cfg.Roots == nil || cfg.Updated == nil {
		return nil, errors.New("kubebundle: client, roots and updated are required")
	}
	if cfg.ClusterTrustBundle == "" {
		cfg.ClusterTrustBundle = DefaultClusterTrustBundle
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Publisher{cfg: cfg, log: cfg.Logger.With("component", "ca-bundle")}, nil
}

// Run publishes until ctx is done. Call it once at a time (a new Lease
// term may call it again after the previous Run returned).
func (p *Publisher) Run(ctx context.Context) error {
	p.queue = workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
	defer p.queue.ShutDown()

	all := informers.NewSharedInformerFactory(p.cfg.Client, 0)
	nsInf := all.Core().V1().Namespaces().Informer()
	byName := informers.NewSharedInformerFactoryWithOptions(p.cfg.Client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = "metadata.name=" + ConfigMapName
	}))
	cmInf := byName.Core().V1().ConfigMaps().Informer()
	enqueueNS := func(obj any) {
		if m, err := meta(obj); err == nil {
			p.queue.Add(m.GetName())
		}
	}
	enqueueOwner := func(obj any) {
		if m, err := meta(obj); err == nil {
			p.queue.Add(m.GetNamespace())
		}
	}
	if _, err := nsInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueueNS,
		UpdateFunc: func(_, o any) { enqueueNS(o) },
	}); err != nil {
		return fmt.Errorf("kubebundle: %w", err)
	}
	if _, err := cmInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(_, o any) { enqueueOwner(o) },
		DeleteFunc: enqueueOwner,
	}); err != nil {
		return fmt.Errorf("kubebundle: %w", err)
	}
	p.namespaces, p.configMaps = nsInf.GetIndexer(), cmInf.GetIndexer()

	factories := []informers.SharedInformerFactory{all, byName}
	if api := servedTrustBundles(p.cfg.Client); api != nil {
		ctb := informers.NewSharedInformerFactoryWithOptions(p.cfg.Client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = "metadata.name=" + p.cfg.ClusterTrustBundle
		}))
		ctbInf := api.informer(ctb)
		if _, err := ctbInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			UpdateFunc: func(any, any) { p.queue.Add(ctbKey) },
			DeleteFunc: func(any) { p.queue.Add(ctbKey) },
		}); err != nil {
			return fmt.Errorf("kubebundle: %w", err)
		}
		p.bundles, p.ctbAPI = ctbInf.GetIndexer(), api
		factories = append(factories, ctb)
		p.queue.Add(ctbKey)
	} else {
		p.log.Debug("ClusterTrustBundle not served; not publishing one")
	}
	for _, f := range factories {
		f.Start(ctx.Done())
	}
	defer func() {
		p.queue.ShutDown()
		for _, f := range factories {
			f.Shutdown()
		}
	}()
	for _, f := range factories {
		for typ, ok := range f.WaitForCacheSync(ctx.Done()) {
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("kubebundle: %v cache did not sync", typ)
			}
		}
	}

	done := make(chan struct{})
	go func() {
		defer close(done)
		for p.next(ctx) {
		}
	}()
	defer func() { <-done }()
	// Every change of the bundle is a change for every namespace.
	for {
		updated := p.cfg.Updated()
		select {
		case <-ctx.Done():
			p.queue.ShutDown()
			return nil
		case <-updated:
			for _, ns := range p.namespaces.ListKeys() {
				p.queue.Add(ns)
			}
			if p.bundles != nil {
				p.queue.Add(ctbKey)
			}
		}
	}
}

// next handles one queue item; false once the queue is shut down.
func (p *Publisher) next(ctx context.Context) bool {
	key, quit := p.queue.Get()
	if quit {
		return false
	}
	defer p.queue.Done(key)
	var err error
	if key == ctbKey {
		err = p.syncClusterTrustBundle(ctx)
	} else {
		err = p.syncNamespace(ctx, key)
	}
	if err != nil && ctx.Err() == nil {
		p.log.Warn("cannot publish the trust bundle; retrying", "namespace", key, "err", err)
		p.queue.AddRateLimited(key)
		return true
	}
	p.queue.Forget(key)
	return true
}

func (p *Publisher) bundlePEM() string { return string(pemcert.Encode(p.cfg.Roots()...)) }

// syncNamespace makes ns's ConfigMap hold the bundle.
func (p *Publisher) syncNamespace(ctx context.Context, name string) error {
	obj, ok, err := p.namespaces.GetByKey(name)
	if err != nil || !ok {
		return err
	}
	ns := obj.(*corev1.Namespace)
	if ns.DeletionTimestamp != nil || ns.Status.Phase == corev1.NamespaceTerminating || slices.Contains(ignored, name) {
		return nil
	}
	want := p.bundlePEM()
	cms := p.cfg.Client.CoreV1().ConfigMaps(name)
	obj, ok, err = p.configMaps.GetByKey(name + "/" + ConfigMapName)
	if err != nil {
		return err
	}
	if !ok {
		_, err := cms.Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: ConfigMapName, Namespace: name, Labels: map[string]string{"istio.io/config": "true"}},
			Data:       map[string]string{ConfigMapKey: want},
		}, metav1.CreateOptions{})
		switch {
		case err == nil:
			p.log.Debug("trust bundle published", "namespace", name)
			return nil
		case apierrors.IsAlreadyExists(err):
			// The informer has not seen it yet: compare it next time.
			return fmt.Errorf("create %s: %w", ConfigMapName, err)
		case apierrors.IsForbidden(err) && isTerminating(err):
			return nil
		default:
			return fmt.Errorf("create %s: %w", ConfigMapName, err)
		}
	}
	cm := obj.(*corev1.ConfigMap)
	if cm.Data[ConfigMapKey] == want {
		return nil
	}
	cm = cm.DeepCopy()
	if cm.Data == nil {
		cm.Data = map[string]string{}
	}
	cm.Data[ConfigMapKey] = want
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("update %s: %w", ConfigMapName, err)
	}
	p.log.Info("trust bundle updated", "namespace", name)
	return nil
}

func isTerminating(err error) bool {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return false
	}
	d := status.Status().Details
	if d == nil {
		return false
	}
	for _, c := range d.Causes {
		if c.Type == corev1.NamespaceTerminatingCause {
			return true
		}
	}
	return false
}

// syncClusterTrustBundle makes the ClusterTrustBundle hold the bundle.
func (p *Publisher) syncClusterTrustBundle(ctx context.Context) error {
	want := p.bundlePEM()
	name := p.cfg.ClusterTrustBundle
	obj, ok, err := p.bundles.GetByKey(name)
	if err != nil {
		return err
	}
	if !ok {
		if err := p.ctbAPI.create(ctx, name, want); err != nil {
			return fmt.Errorf("create ClusterTrustBundle %s: %w", name, err)
		}
		p.log.Info("ClusterTrustBundle published", "name", name, "version", p.ctbAPI.version())
		return nil
	}
	if have, _ := p.ctbAPI.bundle(obj); have == want {
		return nil
	}
	if err := p.ctbAPI.update(ctx, obj, want); err != nil {
		return fmt.Errorf("update ClusterTrustBundle %s: %w", name, err)
	}
	p.log.Info("ClusterTrustBundle updated", "name", name)
	return nil
}

func meta(obj any) (metav1.Object, error) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	m, ok := obj.(metav1.Object)
	if !ok {
		return nil, fmt.Errorf("kubebundle: unexpected %T", obj)
	}
	return m, nil
}
