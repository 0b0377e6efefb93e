package controlplane

import (
	"context"
	"errors"
	"fmt"
	"k8s.io/client-go/rest"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/config/filesource"
	"github.com/zmesh/zmesh/internal/config/kubesource"
	"github.com/zmesh/zmesh/internal/registry"
	"github.com/zmesh/zmesh/internal/xds"
)

// configSource is what the control plane needs of a config source: the
// directory watcher (config/filesource) or the cluster's informers
// (config/kubesource).
type configSource interface {
	// Run follows the source until ctx is done.
	Run(ctx context.Context) error
	// Subscribe delivers every snapshot the source accepts, latest only.
	Subscribe() (<-chan *config.Snapshot, func())
	// Current is the snapshot in force; nil until the first one.
	Current() *config.Snapshot
	// LastError is non-nil while some of the source's content is rejected.
	LastError() error
	// Rejected lists the resources of the latest content not in force.
	Rejected() []*config.SourceError
}

// kubeSource is a kubesource.Source as the control plane reads a config
// source: its rejected objects as config.SourceErrors, as the file source
// reports its rejected documents.
type kubeSource struct{ *kubesource.Source }

// Rejected returns the objects left out of the snapshot.
func (k kubeSource) Rejected() []*config.SourceError {
	rs := k.Source.Rejected()
	out := make([]*config.SourceError, 0, len(rs))
	for _, r := range rs {
		out = append(out, &config.SourceError{Source: "kubernetes", Kind: r.Kind, Key: r.Namespace + "/" + r.Name, Err: r.Err})
	}
	return out
}

var (
	_ configSource = (*filesource.Source)(nil)
	_ configSource = kubeSource{}
)

// kubernetes reports whether config comes from a cluster.
func (c *Config) kubernetes() bool { return c.Kubeconfig != "" || c.InCluster }

// restConfig is the Kubernetes API client configuration of Kubernetes
// mode, the one every Kubernetes part of the control plane uses; nil
// outside that mode.
func (c *Config) restConfig() (*rest.Config, error) {
	if !c.kubernetes() {
		return nil, nil
	}
	rc, err := kubesource.RESTConfig(c.Kubeconfig, c.InCluster)
	if err != nil {
		return nil, fmt.Errorf("controlplane: %w", err)
	}
	return rc, nil
}

// sourceName is the config source's label in zmesh_config_source_valid.
func (c *Config) sourceName() string {
	if c.kubernetes() {
		return "kubernetes"
	}
	return "config-dir"
}

// validateSource checks that exactly one config source is configured. On
// a cluster, the mesh config is the root namespace's `istio` ConfigMap, so
// a mesh config file as well would leave two answers to one question.
func (c *Config) validateSource() error {
	if c.DataDir == "" {
		return errors.New("controlplane: --data-dir is required")
	}
	if !c.kubernetes() {
		if c.ConfigDir == "" {
			return errors.New("controlplane: --config-dir (or --kubeconfig) is required")
		}
		return nil
	}
	if c.ConfigDir != "" {
		return errors.New("controlplane: --config-dir and --kubeconfig are exclusive: with a cluster, Istio resources come from it")
	}
	if c.MeshConfig != "" {
		return errors.New("controlplane: --mesh-config is not used with --kubeconfig: the mesh config is the ConfigMap istio (key mesh) in the root namespace")
	}
	return nil
}

// newKubeSource returns the cluster's config source. Its services go to
// reg (merged there with the proxies' registrations); its mesh ConfigMap
// goes through the same checks as a mesh config file and, when accepted,
// to setMesh (the xDS server's SetMesh); a refused version keeps the last good one and sets
// meshRejected. Until a version is accepted (or the ConfigMap is found
// absent, which means Istio's defaults), no snapshot is published.
func newKubeSource(cfg *Config, reg *registry.Store, setMesh func(xds.Mesh) error, metrics prometheus.Registerer, meshRejected *atomic.Bool) (*kubesource.Source, error) {
	rc, err := cfg.restConfig()
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	return kubesource.New(kubesource.Config{
		REST:          rc,
		TrustDomain:   cfg.TrustDomain,
		DNSDomain:     cfg.DNSDomain,
		RootNamespace: cfg.RootNamespace,
		Mesh: func(data []byte) error {
			err := applyMeshConfigMap(cfg, data, setMesh)
			meshRejected.Store(err != nil)
			if err == nil {
				log.Info("mesh config applied", "configmap", cfg.RootNamespace+"/"+kubesource.DefaultMeshConfigMap)
			}
			return err
		},
		Services:   reg.SetPlatformServices,
		Registerer: metrics,
		Logger:     log,
	})
}

// newCredentials returns, in Kubernetes mode, the reader of the Secrets
// that gateways serve TLS with (their Gateways' credentialNames), whose
// content goes to publish (the xDS server's SetCredentials); nil
// otherwise, where gateways read credentials from files.
func newCredentials(cfg *Config, publish func([]xds.Credential)) (*kubesource.Credentials, error) {
	rc, err := cfg.restConfig()
	if err != nil || rc == nil {
		return nil, err
	}
	return kubesource.NewCredentials(kubesource.CredentialsConfig{REST: rc, Publish: publish, Logger: cfg.Logger})
}

// applyMeshConfigMap checks the `mesh` key of the mesh ConfigMap (nil:
// absent, the flags' settings alone) exactly as a mesh config file is
// checked, and hands the result to apply.
func applyMeshConfigMap(cfg *Config, data []byte, apply func(xds.Mesh) error) error {
	var mc *meshv1alpha1.MeshConfig
	if data != nil {
		var err error
		if mc, err = ParseMeshConfig(data); err != nil {
			return fmt.Errorf("controlplane: mesh ConfigMap: %w", err)
		}
	}
	m, ignored, err := meshSettings(cfg, mc)
	if err != nil {
		return err
	}
	if len(ignored) > 0 {
		cfg.Logger.Warn("mesh config fields not used by zmesh", "fields", ignored)
	}
	return apply(m)
}
