package controlplane

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	"sigs.k8s.io/yaml"

	"github.com/zmesh/zmesh/internal/authz"
	"github.com/zmesh/zmesh/internal/extauthz"
	"github.com/zmesh/zmesh/internal/meshtls"
	"github.com/zmesh/zmesh/internal/xds"
)

// maxMeshConfig bounds a mesh config file.
const maxMeshConfig = 1 << 20

// meshConfigUsed are the MeshConfig fields (JSON names) zmesh honours;
// any other field set in the file is accepted, as Istio would, and logged
// as ignored.
var meshConfigUsed = map[string]bool{
	"trustDomain":           true,
	"trustDomainAliases":    true,
	"rootNamespace":         true,
	"pathNormalization":     true,
	"extensionProviders":    true,
	"outboundTrafficPolicy": true,
	"h2UpgradePolicy":       true,
	"meshMTLS":              true,
	"defaultProviders":      true, // tracing, see meshTracing
	"defaultConfig":         true, // tracing.sampling; the rest is listed by meshTracing
}

// LoadMeshConfig reads an Istio MeshConfig from a YAML (or JSON) file, as
// found under the `mesh` key of Istio's `istio` ConfigMap. Unknown fields
// are errors, so that a typo cannot silently leave a setting at its
// default.
func LoadMeshConfig(path string) (*meshv1alpha1.MeshConfig, error) {
	data, err := readMeshConfig(path)
	if err != nil {
		return nil, err
	}
	return parseMeshConfigFile(path, data)
}

// readMeshConfig reads the MeshConfig file at path, within maxMeshConfig.
func readMeshConfig(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("controlplane: mesh config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxMeshConfig+1))
	if err != nil {
		return nil, fmt.Errorf("controlplane: mesh config %s: %w", path, err)
	}
	if len(data) > maxMeshConfig {
		return nil, fmt.Errorf("controlplane: mesh config %s is larger than %d bytes", path, maxMeshConfig)
	}
	return data, nil
}

func parseMeshConfigFile(path string, data []byte) (*meshv1alpha1.MeshConfig, error) {
	mc, err := ParseMeshConfig(data)
	if err != nil {
		return nil, fmt.Errorf("controlplane: mesh config %s: %w", path, err)
	}
	return mc, nil
}

// ParseMeshConfig parses MeshConfig YAML: YAML to JSON, then protojson
// with unknown fields rejected.
func ParseMeshConfig(data []byte) (*meshv1alpha1.MeshConfig, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, err
	}
	mc := &meshv1alpha1.MeshConfig{}
	if string(js) == "null" {
		return mc, nil // an empty file: every default
	}
	if err := (protojson.UnmarshalOptions{}).Unmarshal(js, mc); err != nil {
		return nil, err
	}
	return mc, nil
}

// meshSettings returns the mesh settings pushed to proxies: the flags'
// values, overridden by what mc sets. It checks what proxies would
// otherwise reject (a push every proxy NACKs is an outage), and lists the
// fields of mc that zmesh does not use.
func meshSettings(cfg *Config, mc *meshv1alpha1.MeshConfig) (xds.Mesh, []string, error) {
	m := xds.Mesh{TrustDomain: cfg.TrustDomain, RootNamespace: cfg.RootNamespace, DNSDomain: cfg.DNSDomain}
	if mc == nil {
		return m, nil, nil
	}
	if td := mc.GetTrustDomain(); td != "" && td != cfg.TrustDomain {
		return m, nil, fmt.Errorf("controlplane: mesh config trustDomain %q differs from --trust-domain %q (the CA's)", td, cfg.TrustDomain)
	}
	for _, a := range mc.GetTrustDomainAliases() {
		if _, err := spiffeid.TrustDomainFromString(a); err != nil {
			return m, nil, fmt.Errorf("controlplane: mesh config trustDomainAliases: %q: %w", a, err)
		}
	}
	m.TrustDomainAliases = mc.GetTrustDomainAliases()
	if ns := mc.GetRootNamespace(); ns != "" {
		m.RootNamespace = ns
	}
	if pn := mc.GetPathNormalization(); pn != nil {
		m.PathNormalization = pn.GetNormalization().String()
		if _, err := authz.ParsePathNormalization(m.PathNormalization); err != nil {
			return m, nil, fmt.Errorf("controlplane: mesh config pathNormalization: %w", err)
		}
	}
	if otp := mc.GetOutboundTrafficPolicy(); otp != nil {
		m.OutboundTrafficPolicy = otp.GetMode().String()
	}
	if hp := mc.GetH2UpgradePolicy(); hp != meshv1alpha1.MeshConfig_DO_NOT_UPGRADE {
		m.H2UpgradePolicy = hp.String()
	}
	// Parsed as the proxies parse it: a policy every proxy would refuse is
	// refused here, before it is pushed.
	if _, err := meshtls.Parse(mc.GetMeshMTLS()); err != nil {
		return m, nil, fmt.Errorf("controlplane: mesh config: %w", err)
	}
	m.MeshMTLS = mc.GetMeshMTLS()
	if err := checkProviders(mc.GetExtensionProviders()); err != nil {
		return m, nil, err
	}
	if err := extauthz.Validate(mc.GetExtensionProviders()); err != nil {
		return m, nil, fmt.Errorf("controlplane: mesh config extensionProviders: %w", err)
	}
	m.ExtensionProviders = mc.GetExtensionProviders()
	ignored, err := meshTracing(&m, mc)
	if err != nil {
		return m, nil, err
	}

	mc.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		if !meshConfigUsed[fd.JSONName()] {
			ignored = append(ignored, fd.JSONName())
		}
		return true
	})
	sort.Strings(ignored)
	return m, ignored, nil
}

// checkProviders applies Istio's validation to the ext_authz providers:
// unique non-empty names, a service, and a port (unless the service is
// host:port), a status code for statusOnError.
func checkProviders(ps []*meshv1alpha1.MeshConfig_ExtensionProvider) error {
	seen := map[string]bool{}
	for i, p := range ps {
		if p.GetName() == "" {
			return fmt.Errorf("controlplane: mesh config extensionProviders[%d]: name is required", i)
		}
		if seen[p.GetName()] {
			return fmt.Errorf("controlplane: mesh config extensionProviders: %q defined twice", p.GetName())
		}
		seen[p.GetName()] = true
		var service, status string
		var port uint32
		switch {
		case p.GetEnvoyExtAuthzGrpc() != nil:
			g := p.GetEnvoyExtAuthzGrpc()
			service, port, status = g.GetService(), g.GetPort(), g.GetStatusOnError()
			if d := g.GetTimeout(); d != nil && d.AsDuration() <= 0 {
				return fmt.Errorf("controlplane: mesh config extensionProviders %q: timeout must be positive", p.GetName())
			}
		case p.GetEnvoyExtAuthzHttp() != nil:
			h := p.GetEnvoyExtAuthzHttp()
			service, port, status = h.GetService(), h.GetPort(), h.GetStatusOnError()
		default:
			continue
		}
		if service == "" {
			return fmt.Errorf("controlplane: mesh config extensionProviders %q: service is required", p.GetName())
		}
		if _, _, err := net.SplitHostPort(service); err != nil && (port == 0 || port > 65535) {
			return fmt.Errorf("controlplane: mesh config extensionProviders %q: port must be 1-65535", p.GetName())
		}
		if status != "" {
			if code, err := strconv.Atoi(status); err != nil || code < 200 || code > 599 {
				return fmt.Errorf("controlplane: mesh config extensionProviders %q: statusOnError %q is not an HTTP status", p.GetName(), status)
			}
		}
	}
	return nil
}

// mesh returns the mesh settings of c: the flags, overridden by the
// MeshConfig file when one is given.
func (c *Config) mesh() (xds.Mesh, [sha256.Size]byte, error) {
	if c.MeshConfig == "" {
		m, err := c.meshFrom(nil)
		return m, [sha256.Size]byte{}, err
	}
	data, err := readMeshConfig(c.MeshConfig)
	if err != nil {
		return xds.Mesh{}, [sha256.Size]byte{}, err
	}
	m, err := c.meshFrom(data)
	return m, sha256.Sum256(data), err
}

// meshFrom returns the mesh settings of the MeshConfig file content data
// (nil: no file, the flags alone), logging the fields zmesh does not use.
func (c *Config) meshFrom(data []byte) (xds.Mesh, error) {
	var mc *meshv1alpha1.MeshConfig
	if data != nil {
		var err error
		if mc, err = parseMeshConfigFile(c.MeshConfig, data); err != nil {
			return xds.Mesh{}, err
		}
	}
	m, ignored, err := meshSettings(c, mc)
	if err != nil {
		return xds.Mesh{}, err
	}
	if len(ignored) > 0 {
		c.Logger.Warn("mesh config fields not used by zmesh", "fields", ignored)
	}
	return m, nil
}

// watchMeshConfig applies edits of the MeshConfig file while the control
// plane runs, as istiod follows its mesh ConfigMap: every interval it reads
// the file, and when the content differs from the last it saw (started:
// the SHA-256 of what Run loaded) it checks it as at start (meshFrom) and
// hands the result to apply, which pushes it to every proxy. A file that is
// unreadable, malformed or refused leaves the last good settings in force,
// with one log line per bad version; rejected says whether that is the
// case now (for zmesh_config_source_valid).
func watchMeshConfig(ctx context.Context, cfg *Config, started [sha256.Size]byte, interval time.Duration, apply func(xds.Mesh) error, rejected *atomic.Bool) {
	path := cfg.MeshConfig
	if path == "" {
		return
	}
	log := cfg.Logger.With("file", path)
	last, lastOK := started, true // Run loaded started
	var lastErr string
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		data, err := readMeshConfig(path)
		if err != nil {
			if err.Error() != lastErr {
				log.Warn("mesh config unreadable; keeping the last good one", "err", err)
				lastErr = err.Error()
			}
			rejected.Store(true)
			continue
		}
		sum := sha256.Sum256(data)
		if sum == last {
			// Readable again with the content last seen: its verdict
			// stands, whatever the failed reads said meanwhile.
			if lastErr != "" && lastOK {
				log.Info("mesh config readable again; unchanged")
			}
			lastErr = ""
			rejected.Store(!lastOK)
			continue
		}
		last, lastErr = sum, ""
		m, err := cfg.meshFrom(data)
		if err == nil {
			err = apply(m)
		}
		lastOK = err == nil
		if err != nil {
			log.Error("mesh config rejected; keeping the last good one", "err", err)
			rejected.Store(true)
			continue
		}
		rejected.Store(false)
		log.Info("mesh config applied")
	}
}

const configSourceValidHelp = "1 if every resource of the latest content of a config source is in force, 0 if some were rejected (last good versions kept where there are)."

// registerConfigHealth exports zmesh_config_source_valid: 1 while the
// control plane pushes everything a config source currently says, 0 while
// some of it is rejected: a document or object that does not load, the
// directory unreadable (src.LastError), or a resource left out because
// proxies would refuse it (admitted, when not nil). An operator alerts on
// 0: edits are not taking effect; zmesh_config_rejected_resources and
// /debug/config say which.
func registerConfigHealth(reg prometheus.Registerer, src configSource, srcName string, admitted rejecter, meshConfig bool, meshRejected *atomic.Bool) {
	valid := func(ok bool) float64 {
		if ok {
			return 1
		}
		return 0
	}
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "zmesh_config_source_valid",
		Help:        configSourceValidHelp,
		ConstLabels: prometheus.Labels{"source": srcName},
	}, func() float64 {
		return valid(src.LastError() == nil && (admitted == nil || len(admitted.Rejected()) == 0))
	}))
	if meshConfig {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "zmesh_config_source_valid",
			Help:        configSourceValidHelp,
			ConstLabels: prometheus.Labels{"source": "mesh-config"},
		}, func() float64 { return valid(!meshRejected.Load()) }))
	}
}
