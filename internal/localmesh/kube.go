package localmesh

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Cluster is the Kubernetes cluster a mesh runs against in Kubernetes
// mode (Config.Cluster, `zmesh up --kubeconfig`). localmesh needs only
// these three things of it, so it links no Kubernetes client; the
// implementation is localmesh/kubecluster.
type Cluster interface {
	// Kubeconfig is the kubeconfig file the control plane is given.
	Kubeconfig() string
	// Prepare puts on the cluster what the mesh of dir needs before its
	// control plane starts: Istio's CRDs and the root namespace when they
	// are missing, dir's Istio resources (created or updated), the
	// namespaces and service accounts of workloads, and, when meshConfig
	// is not nil, the mesh ConfigMap holding it.
	Prepare(ctx context.Context, dir string, workloads []Workload, meshConfig []byte) error
	// Token returns a token of namespace/serviceAccount for the mesh CA
	// (audience istio-ca, from TokenRequest) and when it expires.
	Token(ctx context.Context, namespace, serviceAccount string) (token string, expires time.Time, err error)
}

// tokenRetry is how long a failed token refresh waits before trying
// again; the file in place stays valid meanwhile.
const tokenRetry = 10 * time.Second

// kubeTokens keeps each proxy's service-account token file fresh in
// Kubernetes mode: the token is written before the proxy starts and
// rewritten at half its lifetime, and the proxy reads the file again at
// each CSR, as it reads a projected token in a pod.
type kubeTokens struct {
	cluster Cluster
	dir     string // where the token files go (0700)
	cfg     *Config
	// owner, when set, owns each token file (uid, gid): under capture the
	// proxy runs as its own user and must read every refreshed token.
	owner *[2]int
}

// path is m's token file.
func (k *kubeTokens) path(m member) string {
	return filepath.Join(k.dir, m.Namespace+"."+m.Name+".token")
}

// write asks the cluster for m's token and writes it to its file (0600,
// replaced atomically so that a proxy never reads half a token). It
// returns the token's expiry.
func (k *kubeTokens) write(ctx context.Context, m member) (time.Time, error) {
	tok, exp, err := k.cluster.Token(ctx, m.Namespace, m.ServiceAccount)
	if err != nil {
		return time.Time{}, fmt.Errorf("localmesh: token for %s: %w", m.Key(), err)
	}
	if err := os.MkdirAll(k.dir, 0o700); err != nil {
		return time.Time{}, err
	}
	path := k.path(m)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(tok), 0o600); err != nil {
		return time.Time{}, err
	}
	if k.owner != nil {
		if err := os.Chown(tmp, k.owner[0], k.owner[1]); err != nil {
			os.Remove(tmp)
			return time.Time{}, err
		}
	}
	return exp, os.Rename(tmp, path)
}

// refresh rewrites m's token at half the lifetime of the one in place
// until ctx is done; a failure is retried every tokenRetry while the
// token in place is still valid.
func (k *kubeTokens) refresh(ctx context.Context, m member, expires time.Time) {
	next := time.Now().Add(time.Until(expires) / 2)
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(next)):
		}
		exp, err := k.write(ctx, m)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			k.cfg.Logger.Warn("cannot refresh the proxy's service-account token; retrying", "workload", m.Key(), "err", err, "in", tokenRetry)
			next = time.Now().Add(tokenRetry)
			continue
		}
		k.cfg.Logger.Info("service-account token refreshed", "workload", m.Key(), "expires", exp.UTC().Format(time.RFC3339))
		next = time.Now().Add(time.Until(exp) / 2)
	}
}

// start writes every member's token file and starts keeping them fresh
// in goroutines owned by wg. It returns the files by member key.
func (k *kubeTokens) start(ctx context.Context, wg *sync.WaitGroup, members []member) (map[string]string, error) {
	files := map[string]string{}
	for _, m := range members {
		exp, err := k.write(ctx, m)
		if err != nil {
			return nil, err
		}
		files[m.Key()] = k.path(m)
		wg.Go(func() { k.refresh(ctx, m, exp) })
	}
	return files, nil
}

// prepareCluster applies the mesh directory to the cluster (Kubernetes
// mode), with the mesh config file, when one is given, as the mesh
// ConfigMap: on a cluster the control plane reads the mesh config there.
func prepareCluster(ctx context.Context, cfg Config, dir string, workloads []Workload) error {
	var mesh []byte
	if cfg.MeshConfig != "" {
		b, err := os.ReadFile(cfg.MeshConfig)
		if err != nil {
			return fmt.Errorf("localmesh: mesh config: %w", err)
		}
		mesh = b
	}
	pctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := cfg.Cluster.Prepare(pctx, dir, workloads, mesh); err != nil {
		return fmt.Errorf("localmesh: prepare the cluster: %w", err)
	}
	return nil
}
