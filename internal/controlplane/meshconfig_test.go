package controlplane

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zmesh/zmesh/internal/config/filesource"
	"github.com/zmesh/zmesh/internal/xds"
)

const sampleMeshConfig = `
trustDomainAliases: [old.example]
rootNamespace: mesh-root
pathNormalization: {normalization: MERGE_SLASHES}
outboundTrafficPolicy: {mode: REGISTRY_ONLY}
h2UpgradePolicy: UPGRADE
meshMTLS: {minProtocolVersion: TLSV1_2, cipherSuites: [ECDHE-ECDSA-AES128-GCM-SHA256], ecdhCurves: [P-256]}
accessLogFile: /dev/stdout
extensionProviders:
- name: authz
  envoyExtAuthzGrpc:
    service: ext-authz.foo.svc.cluster.local
    port: 9000
    timeout: 2s
    failOpen: true
- name: zipkin
  zipkin: {service: zipkin.istio-system.svc.cluster.local, port: 9411}
`

func TestMeshConfigFileOverridesFlags(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mesh.yaml")
	if err := os.WriteFile(path, []byte(sampleMeshConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := &Config{ConfigDir: "x", DataDir: "y", MeshConfig: path}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	mc, err := LoadMeshConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	m, ignored, err := meshSettings(cfg, mc)
	if err != nil {
		t.Fatal(err)
	}
	if m.TrustDomain != "cluster.local" || m.RootNamespace != "mesh-root" || m.DNSDomain != "cluster.local" ||
		m.PathNormalization != "MERGE_SLASHES" || m.OutboundTrafficPolicy != "REGISTRY_ONLY" || m.H2UpgradePolicy != "UPGRADE" ||
		m.MeshMTLS.GetMinProtocolVersion().String() != "TLSV1_2" || len(m.MeshMTLS.GetCipherSuites()) != 1 ||
		len(m.TrustDomainAliases) != 1 || m.TrustDomainAliases[0] != "old.example" {
		t.Errorf("mesh = %+v", m)
	}
	if len(m.ExtensionProviders) != 2 || m.ExtensionProviders[0].GetEnvoyExtAuthzGrpc().GetPort() != 9000 ||
		!m.ExtensionProviders[0].GetEnvoyExtAuthzGrpc().GetFailOpen() {
		t.Errorf("providers = %v", m.ExtensionProviders)
	}
	if strings.Join(ignored, ",") != "accessLogFile" {
		t.Errorf("ignored = %v, want [accessLogFile]", ignored)
	}
}

func TestMeshConfigRejects(t *testing.T) {
	for name, yaml := range map[string]string{
		"unknown field":                 "pathNormalisation: {normalization: BASE}",
		"unknown normalization":         "pathNormalization: {normalization: SOMETIMES}",
		"other trust domain":            "trustDomain: other.example",
		"bad alias":                     "trustDomainAliases: ['not a domain']",
		"provider without port":         "extensionProviders: [{name: a, envoyExtAuthzGrpc: {service: authz.example}}]",
		"provider without name":         "extensionProviders: [{envoyExtAuthzGrpc: {service: authz.example, port: 1}}]",
		"duplicate provider":            "extensionProviders: [{name: a, envoyExtAuthzGrpc: {service: x, port: 1}}, {name: a, envoyExtAuthzGrpc: {service: y, port: 1}}]",
		"bad status on error":           "extensionProviders: [{name: a, envoyExtAuthzGrpc: {service: x, port: 1, statusOnError: nope}}]",
		"not yaml":                      "{[",
		"http path prefix":              "extensionProviders: [{name: a, envoyExtAuthzHttp: {service: x, port: 1, pathPrefix: check}}]",
		"http lone star":                "extensionProviders: [{name: a, envoyExtAuthzHttp: {service: x, port: 1, includeRequestHeadersInCheck: ['*']}}]",
		"http body limit":               "extensionProviders: [{name: a, envoyExtAuthzHttp: {service: x, port: 1, includeRequestBodyInCheck: {maxRequestBytes: 0}}}]",
		"suite without forward secrecy": "meshMTLS: {minProtocolVersion: TLSV1_2, cipherSuites: [AES128-GCM-SHA256]}",
		"unknown curve":                 "meshMTLS: {ecdhCurves: [P-224]}",
		"unknown h2 upgrade policy":     "h2UpgradePolicy: SOMETIMES",
	} {
		t.Run(name, func(t *testing.T) {
			cfg := &Config{ConfigDir: "x", DataDir: "y"}
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			mc, err := ParseMeshConfig([]byte(yaml))
			if err == nil {
				_, _, err = meshSettings(cfg, mc)
			}
			if err == nil {
				t.Errorf("accepted %s", yaml)
			}
		})
	}
}

func TestNoMeshConfigKeepsFlags(t *testing.T) {
	cfg := &Config{ConfigDir: "x", DataDir: "y", RootNamespace: "root"}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	m, _, err := cfg.mesh()
	if err != nil {
		t.Fatal(err)
	}
	if m.RootNamespace != "root" || m.TrustDomain != "cluster.local" || m.PathNormalization != "" || m.ExtensionProviders != nil {
		t.Errorf("mesh = %+v", m)
	}
}

// TestWatchMeshConfig: an edit of the MeshConfig file is applied while the
// control plane runs; a malformed or refused edit is not, and the next good
// one is.
func TestWatchMeshConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mesh.yaml")
	write := func(s string) {
		t.Helper()
		// Through a rename, as editors and ConfigMap updates do.
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write("pathNormalization: {normalization: BASE}\n")
	cfg := &Config{ConfigDir: "x", DataDir: "y", MeshConfig: path, Logger: slog.New(slog.DiscardHandler)}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	_, started, err := cfg.mesh() // as Run loads it
	if err != nil {
		t.Fatal(err)
	}
	applied := make(chan xds.Mesh, 10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	rejected := new(atomic.Bool)
	go func() {
		defer close(done)
		watchMeshConfig(ctx, cfg, started, 10*time.Millisecond, func(m xds.Mesh) error { applied <- m; return nil }, rejected)
	}()
	t.Cleanup(func() { cancel(); <-done })
	next := func(what string) xds.Mesh {
		t.Helper()
		select {
		case m := <-applied:
			return m
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: nothing applied", what)
			return xds.Mesh{}
		}
	}
	nothing := func(what string) {
		t.Helper()
		select {
		case m := <-applied:
			t.Fatalf("%s: applied %+v", what, m)
		case <-time.After(200 * time.Millisecond):
		}
	}

	nothing("the file as at start")
	write("outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n")
	if m := next("an edit"); m.OutboundTrafficPolicy != "REGISTRY_ONLY" {
		t.Errorf("applied %+v, want REGISTRY_ONLY", m)
	}
	if rejected.Load() {
		t.Error("rejected after a good edit")
	}
	write("outboundTrafficPolicy: {mode: REGISTRY_ONLY}\nnotAField: 1\n")
	nothing("an unknown field")
	if !rejected.Load() {
		t.Error("not marked rejected after a malformed edit")
	}
	write("meshMTLS: {cipherSuites: [AES128-GCM-SHA256]}\n")
	nothing("a refused cipher suite")
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	nothing("a removed file")
	write("h2UpgradePolicy: UPGRADE\n")
	if m := next("a good edit after bad ones"); m.H2UpgradePolicy != "UPGRADE" || m.OutboundTrafficPolicy != "" {
		t.Errorf("applied %+v, want UPGRADE and the default outbound policy", m)
	}
	deadline := time.Now().Add(5 * time.Second)
	for rejected.Load() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if rejected.Load() {
		t.Error("still marked rejected after a good edit")
	}
}

// TestConfigSourceValidMetric: zmesh_config_source_valid says, per source,
// whether the latest content is in force.
func TestConfigSourceValidMetric(t *testing.T) {
	dir := t.TempDir()
	src, err := filesource.New(filesource.Config{Dir: dir, Debounce: 10 * time.Millisecond, Rescan: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); src.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	reg := prometheus.NewRegistry()
	rejected := new(atomic.Bool)
	registerConfigHealth(reg, src, "config-dir", nil, true, rejected)
	read := func() map[string]float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]float64{}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				got[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
			}
		}
		return got
	}
	if got := read(); got["config-dir"] != 1 || got["mesh-config"] != 1 {
		t.Errorf("gauges %v, want both 1", got)
	}
	bad := "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: x, namespace: foo}\nspec: {action: SOMETIMES}\n"
	if err := os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for read()["config-dir"] != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("config-dir gauge still %v after a bad file (LastError %v)", read()["config-dir"], src.LastError())
		}
		time.Sleep(10 * time.Millisecond)
	}
	rejected.Store(true)
	if got := read(); got["mesh-config"] != 0 {
		t.Errorf("gauges %v, want mesh-config 0 after a rejection", got)
	}
}

// TestWatchMeshConfigSeesEditsMadeBeforeItStarts: an edit that lands
// between the control plane loading the file and the watcher's first look
// is applied, since the watcher compares with what was loaded, not with
// what it first finds.
func TestWatchMeshConfigSeesEditsMadeBeforeItStarts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mesh.yaml")
	if err := os.WriteFile(path, []byte("rootNamespace: first\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := &Config{ConfigDir: "x", DataDir: "y", MeshConfig: path, Logger: slog.New(slog.DiscardHandler)}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	_, started, err := cfg.mesh()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("rootNamespace: second\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	applied := make(chan xds.Mesh, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		watchMeshConfig(ctx, cfg, started, 10*time.Millisecond, func(m xds.Mesh) error { applied <- m; return nil }, new(atomic.Bool))
	}()
	defer func() { cancel(); <-done }()
	select {
	case m := <-applied:
		if m.RootNamespace != "second" {
			t.Errorf("applied root namespace %q, want second", m.RootNamespace)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the edit made before the watcher started was never applied")
	}
}

// TestWatchMeshConfigClearsAReadErrorOnTheSameContent: a mesh config file
// briefly unreadable (here: removed) is reported, and once it is back with
// the content in force the report clears; no edit is needed.
func TestWatchMeshConfigClearsAReadErrorOnTheSameContent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mesh.yaml")
	const content = "rootNamespace: first\n"
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := &Config{ConfigDir: "x", DataDir: "y", MeshConfig: path, Logger: slog.New(slog.DiscardHandler)}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	_, started, err := cfg.mesh()
	if err != nil {
		t.Fatal(err)
	}
	rejected := new(atomic.Bool)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		watchMeshConfig(ctx, cfg, started, 10*time.Millisecond, func(xds.Mesh) error { return nil }, rejected)
	}()
	defer func() { cancel(); <-done }()
	wait := func(what string, want bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for rejected.Load() != want {
			if time.Now().After(deadline) {
				t.Fatalf("not within 5s: %s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	wait("rejected while the file is gone", true)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	wait("cleared with the same content back", false)
}
