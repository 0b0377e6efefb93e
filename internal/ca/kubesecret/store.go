package kubesecret

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/zmesh/zmesh/internal/ca"
)

// Names of the Secrets and their keys, Istio's where Istio has one.
const (
	// CASecret holds the self-signed root the control plane creates.
	CASecret = "istio-ca-secret"
	// PluggedSecret holds an operator's CA (Istio's plug-in CA).
	PluggedSecret = "cacerts"
	// TokenKeySecret holds the bootstrap-token key under TokenKeyKey.
	TokenKeySecret = "zmesh-token-key"
	TokenKeyKey    = "token-key"
	// CASecretType is the type Istio gives istio-ca-secret.
	CASecretType corev1.SecretType = "istio.io/ca-root"
	// DefaultNamespace is where the Secrets live: Istio's root namespace.
	DefaultNamespace = "istio-system"
)

// Config configures a Store.
type Config struct {
	// Client reaches the cluster. Required. The control plane's account
	// needs get, list, watch and create on Secrets in Namespace, and update
	// on istio-ca-secret.
	Client kubernetes.Interface
	// Namespace holds the Secrets; default DefaultNamespace.
	Namespace string
	// CA configures the Authority; its DataDir must be empty and its
	// TrustDomain set.
	CA ca.Config
	// Logger receives changes and refusals; default discards.
	Logger *slog.Logger
}

// Store is an Authority whose material lives in Secrets. Load makes one;
// Run keeps it in step with the Secrets.
type Store struct {
	client    kubernetes.Interface
	ns        string
	log       *slog.Logger
	authority *ca.Authority
	caCfg     ca.Config

	mu sync.Mutex
	// source is the Secret the Authority's material came from, and
	// material its content, to repair istio-ca-secret if it is deleted.
	source   string
	material ca.Material
}

// Load reads the CA material (cacerts, else istio-ca-secret, created when
// absent) and the bootstrap-token key, and returns a Store whose Authority
// signs with them. A cacerts Secret that is present but does not verify is
// an error, not a reason to fall back to another root: that would split the
// mesh.
func Load(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Client == nil {
		return nil, errors.New("kubesecret: no Kubernetes client")
	}
	if cfg.Namespace == "" {
		cfg.Namespace = DefaultNamespace
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{client: cfg.Client, ns: cfg.Namespace, log: cfg.Logger.With("component", "ca")}

	source, m, err := s.loadMaterial(ctx, cfg.CA)
	if err != nil {
		return nil, err
	}
	key, err := s.loadTokenKey(ctx)
	if err != nil {
		return nil, err
	}
	a, err := ca.New(cfg.CA, m, key)
	if err != nil {
		return nil, fmt.Errorf("kubesecret: %s/%s: %w", s.ns, source, err)
	}
	s.authority, s.caCfg, s.source, s.material = a, cfg.CA, source, m
	s.log.Info("CA loaded from Secret", "secret", s.ns+"/"+source, "pluggedIn", m.PluggedIn,
		"signing", a.SigningCertificate().Subject.String())
	return s, nil
}

// Authority returns the CA, shared with the CSR service.
func (s *Store) Authority() *ca.Authority { return s.authority }

// Source returns the name of the Secret the CA signs from.
func (s *Store) Source() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.source
}

func (s *Store) secrets() secretClient { return s.client.CoreV1().Secrets(s.ns) }

type secretClient interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (*corev1.Secret, error)
	Create(ctx context.Context, secret *corev1.Secret, opts metav1.CreateOptions) (*corev1.Secret, error)
}

func (s *Store) loadMaterial(ctx context.Context, cfg ca.Config) (string, ca.Material, error) {
	plugged, err := s.secrets().Get(ctx, PluggedSecret, metav1.GetOptions{})
	switch {
	case err == nil:
		return PluggedSecret, materialOf(plugged), nil
	case !apierrors.IsNotFound(err):
		return "", ca.Material{}, fmt.Errorf("kubesecret: read %s/%s: %w", s.ns, PluggedSecret, err)
	}
	sec, err := getOrCreate(ctx, s.secrets(), CASecret, func() (*corev1.Secret, error) {
		m, err := ca.NewRootMaterial(cfg)
		if err != nil {
			return nil, err
		}
		return s.caSecret(m), nil
	})
	if err != nil {
		return "", ca.Material{}, fmt.Errorf("kubesecret: %s/%s: %w", s.ns, CASecret, err)
	}
	return CASecret, materialOf(sec), nil
}

func (s *Store) loadTokenKey(ctx context.Context) ([]byte, error) {
	sec, err := getOrCreate(ctx, s.secrets(), TokenKeySecret, func() (*corev1.Secret, error) {
		key, err := ca.NewTokenKey()
		if err != nil {
			return nil, err
		}
		return &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: TokenKeySecret, Namespace: s.ns, Labels: labels()},
			Type:       corev1.SecretTypeOpaque,
			Data:       map[string][]byte{TokenKeyKey: key},
		}, nil
	})
	if err != nil {
		return nil, fmt.Errorf("kubesecret: %s/%s: %w", s.ns, TokenKeySecret, err)
	}
	return sec.Data[TokenKeyKey], nil
}

// getOrCreate returns the Secret name, creating it with make when absent.
// When several replicas race, the API lets one Create succeed; the others
// get AlreadyExists and read the winner's, so all end with the same one.
func getOrCreate(ctx context.Context, c secretClient, name string, make func() (*corev1.Secret, error)) (*corev1.Secret, error) {
	sec, err := c.Get(ctx, name, metav1.GetOptions{})
	if err == nil {
		return sec, nil
	}
	if !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("read: %w", err)
	}
	fresh, err := make()
	if err != nil {
		return nil, err
	}
	created, err := c.Create(ctx, fresh, metav1.CreateOptions{})
	if err == nil {
		return created, nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("create: %w", err)
	}
	sec, err = c.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("read after losing the race to create it: %w", err)
	}
	return sec, nil
}

// caSecret lays self-signed material out as Istio's istio-ca-secret.
func (s *Store) caSecret(m ca.Material) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: CASecret, Namespace: s.ns, Labels: labels()},
		Type:       CASecretType,
		Data: map[string][]byte{
			ca.CACertFile:    m.CACert,
			ca.CAKeyFile:     m.CAKey,
			ca.CertChainFile: m.CertChain,
			ca.RootCertFile:  m.RootCert,
		},
	}
}

func labels() map[string]string { return map[string]string{"app.kubernetes.io/managed-by": "zmesh"} }

// materialOf reads Istio's keys. An istio-ca-secret written without
// root-cert.pem is a self-signed root: ca-cert.pem is the bundle.
func materialOf(sec *corev1.Secret) ca.Material {
	m := ca.Material{
		CACert:    sec.Data[ca.CACertFile],
		CAKey:     sec.Data[ca.CAKeyFile],
		CertChain: sec.Data[ca.CertChainFile],
		RootCert:  sec.Data[ca.RootCertFile],
		PluggedIn: sec.Name == PluggedSecret,
	}
	if sec.Name == CASecret && len(bytes.TrimSpace(m.RootCert)) == 0 {
		m.RootCert = m.CACert
	}
	return m
}

// Run watches the Secrets until ctx is done and signs with what they hold:
// a new or edited cacerts (plugged in without a restart), an edited
// istio-ca-secret (another replica's rotation). Material that does not
// verify is logged and refused; the Authority keeps its last good one. A
// deleted istio-ca-secret is written back from the material in use, since
// a fresh root would split the mesh; a deleted cacerts leaves the plugged-in
// CA in force until a restart.
func (s *Store) Run(ctx context.Context) error {
	changed := make(chan struct{}, 1)
	notify := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	stores := map[string]cache.Store{}
	var factories []informers.SharedInformerFactory
	for _, name := range []string{PluggedSecret, CASecret} {
		f := informers.NewSharedInformerFactoryWithOptions(s.client, 10*time.Minute,
			informers.WithNamespace(s.ns),
			informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = "metadata.name=" + name }))
		inf := f.Core().V1().Secrets().Informer()
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { notify() },
			UpdateFunc: func(any, any) { notify() },
			DeleteFunc: func(any) { notify() },
		}); err != nil {
			return fmt.Errorf("kubesecret: watch %s: %w", name, err)
		}
		stores[name] = inf.GetStore()
		factories = append(factories, f)
		f.Start(ctx.Done())
	}
	defer func() {
		for _, f := range factories {
			f.Shutdown()
		}
	}()
	for _, f := range factories {
		for typ, ok := range f.WaitForCacheSync(ctx.Done()) {
			if !ok && ctx.Err() == nil {
				return fmt.Errorf("kubesecret: %v cache did not sync", typ)
			}
		}
	}
	// What changed between Load and the first List raised no event.
	notify()
	get := func(name string) *corev1.Secret {
		obj, ok, _ := stores[name].GetByKey(s.ns + "/" + name)
		if !ok {
			return nil
		}
		sec, _ := obj.(*corev1.Secret)
		return sec
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
		s.sync(ctx, get(PluggedSecret), get(CASecret))
	}
}

// sync applies the Secrets' content as Run describes.
func (s *Store) sync(ctx context.Context, plugged, selfSigned *corev1.Secret) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case plugged != nil:
		s.apply(plugged)
	case s.source == PluggedSecret:
		s.log.Warn("Secret cacerts deleted; keeping the plugged-in CA until restart", "secret", s.ns+"/"+PluggedSecret)
	case selfSigned != nil:
		s.apply(selfSigned)
	default:
		// Written back as it was: every replica may try, one create wins.
		_, err := s.secrets().Create(ctx, s.caSecret(s.material), metav1.CreateOptions{})
		switch {
		case err == nil:
			s.log.Warn("Secret istio-ca-secret was deleted; written back with the root in use", "secret", s.ns+"/"+CASecret)
		case !apierrors.IsAlreadyExists(err):
			s.log.Error("cannot write back deleted istio-ca-secret", "err", err)
		}
	}
}

func (s *Store) apply(sec *corev1.Secret) {
	m := materialOf(sec)
	changed, err := s.authority.SetMaterial(m)
	if err != nil {
		s.log.Error("CA material in Secret refused; keeping the current CA", "secret", s.ns+"/"+sec.Name, "err", err)
		return
	}
	s.source, s.material = sec.Name, m
	if changed {
		roots := s.authority.Bundle()
		names := make([]string, len(roots))
		for i, r := range roots {
			names[i] = r.Subject.String()
		}
		s.log.Info("CA changed from Secret", "secret", s.ns+"/"+sec.Name,
			"signing", s.authority.SigningCertificate().Subject.String(), "roots", names)
	}
}
