package controlplane

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"k8s.io/client-go/kubernetes"

	"github.com/zmesh/zmesh/internal/ca"
	"github.com/zmesh/zmesh/internal/ca/csr"
	"github.com/zmesh/zmesh/internal/ca/kubeauth"
	"github.com/zmesh/zmesh/internal/ca/kubebundle"
	"github.com/zmesh/zmesh/internal/ca/kubelease"
	"github.com/zmesh/zmesh/internal/ca/kubesecret"
	"github.com/zmesh/zmesh/internal/pemcert"
)

// caLease is the Lease whose holder publishes the trust bundle and rotates
// the self-signed root when it nears its end; every replica signs.
const caLease = "zmesh-ca"

// kubeLoadTimeout bounds reading (or creating) the CA's Secrets at start.
const kubeLoadTimeout = 30 * time.Second

// kubeIdentity is what the control plane does for identity in Kubernetes
// mode (Config.Kubeconfig set): the CA's material in Secrets of the root
// namespace instead of the data dir, service-account tokens checked by
// TokenReview added to the CSR service's authenticators, and the trust
// bundle published to every namespace, and the self-signed root rotated
// before it expires, by the holder of a Lease.
type kubeIdentity struct {
	client    kubernetes.Interface
	ns        string
	dataDir   string
	store     *kubesecret.Store
	auth      *kubeauth.Authenticator
	publisher *kubebundle.Publisher
	log       *slog.Logger
}

// loadAuthority returns the CA: from Secrets in Kubernetes mode (with the
// kubeIdentity that keeps it), else from the data dir (kubeIdentity nil).
func loadAuthority(cfg Config, td spiffeid.TrustDomain, metrics prometheus.Registerer) (*ca.Authority, *kubeIdentity, error) {
	caCfg := ca.Config{TrustDomain: td, DefaultTTL: cfg.CertTTL, MaxTTL: cfg.MaxCertTTL, Clock: cfg.Clock}
	rc, err := cfg.restConfig()
	if err != nil {
		return nil, nil, err
	}
	if rc == nil {
		caCfg.DataDir = cfg.DataDir
		a, err := ca.Load(caCfg)
		return a, nil, err
	}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, nil, fmt.Errorf("controlplane: kubernetes client: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), kubeLoadTimeout)
	defer cancel()
	store, err := kubesecret.Load(ctx, kubesecret.Config{Client: client, Namespace: cfg.RootNamespace, CA: caCfg, Logger: cfg.Logger})
	if err != nil {
		return nil, nil, err
	}
	a := store.Authority()
	auth, err := kubeauth.New(kubeauth.Config{
		Reviews:     client.AuthenticationV1().TokenReviews(),
		TrustDomain: td,
		Clock:       a.Clock(),
		Registerer:  metrics,
	})
	if err != nil {
		return nil, nil, err
	}
	pub, err := kubebundle.New(kubebundle.Config{Client: client, Roots: a.Bundle, Updated: a.Updated, Logger: cfg.Logger})
	if err != nil {
		return nil, nil, err
	}
	k := &kubeIdentity{client: client, ns: cfg.RootNamespace, dataDir: cfg.DataDir, store: store, auth: auth, publisher: pub, log: cfg.Logger}
	return a, k, nil
}

// authenticators is the CSR service's chain: a renewal's mesh certificate,
// a bootstrap token (machines outside the cluster), then a service-account
// token. Each takes only its own kind of credential, and the first that
// finds one decides (csr.ErrNoCredentials). Nil outside Kubernetes mode:
// the service's default chain.
func (k *kubeIdentity) authenticators(a *ca.Authority) []csr.Authenticator {
	if k == nil {
		return nil
	}
	return []csr.Authenticator{
		csr.NewClientCertAuthenticator(a),
		&csr.TokenAuthenticator{Verifier: a.TokenVerifier()},
		k.auth,
	}
}

// start runs the Secret watch, the bundle file, and the Lease-held
// publisher and root rotation in goroutines owned by wg, until ctx is done. Their failures
// are logged, never fatal: signing goes on with the material in force.
func (k *kubeIdentity) start(ctx context.Context, wg *sync.WaitGroup) {
	wg.Go(func() {
		if err := k.store.Run(ctx); err != nil {
			k.log.Error("CA Secret watch stopped; the CA keeps its current material", "err", err)
		}
	})
	if k.dataDir != "" {
		wg.Go(func() { k.writeBundleFile(ctx) })
	}
	wg.Go(func() {
		err := kubelease.Run(ctx, kubelease.Config{Client: k.client, Namespace: k.ns, Name: caLease, Logger: k.log},
			func(lctx context.Context) {
				var term sync.WaitGroup
				term.Go(func() {
					if err := k.publisher.Run(lctx); err != nil {
						k.log.Error("trust bundle publisher stopped", "err", err)
					}
				})
				term.Go(func() { k.store.RunRotation(lctx, kubesecret.AutoRotation{}) })
				term.Wait()
			})
		if err != nil {
			k.log.Error("trust bundle publisher not started", "err", err)
		}
	})
}

// writeBundleFile keeps DATA_DIR/root-cert.pem equal to the CA's bundle, as
// the control plane does outside Kubernetes, for proxies started next to
// it (zmesh up --kubeconfig).
func (k *kubeIdentity) writeBundleFile(ctx context.Context) {
	a := k.store.Authority()
	path := filepath.Join(k.dataDir, ca.RootCertFile)
	for {
		updated := a.Updated()
		if err := writeFileAtomic(path, pemcert.Encode(a.Bundle()...)); err != nil {
			k.log.Warn("cannot write the trust bundle file", "file", path, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-updated:
		}
	}
}

// writeFileAtomic writes data (public: a bundle) to path through a
// temporary file and a rename, so a reader never sees half a bundle.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
