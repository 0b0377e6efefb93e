package kubesource

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/registry"
)

// Defaults for Config's zero fields.
const (
	DefaultDebounce      = 100 * time.Millisecond
	DefaultRootNamespace = "istio-system"
	DefaultMeshConfigMap = "istio"
	// MeshConfigKey is the key of the mesh ConfigMap that holds the
	// MeshConfig YAML, as in Istio.
	MeshConfigKey = "mesh"
)

// Config configures a Source.
type Config struct {
	// REST reaches the cluster (RESTConfig builds it). Required.
	REST *rest.Config
	// TrustDomain names endpoint identities, spiffe://TD/ns/NS/sa/SA.
	// Default cluster.local.
	TrustDomain string
	// DNSDomain is the cluster's DNS suffix: services are
	// NAME.NS.svc.DNSDOMAIN. Default cluster.local.
	DNSDomain string
	// RootNamespace holds the mesh ConfigMap. Default istio-system.
	RootNamespace string
	// MeshConfigMap is the name of the mesh ConfigMap. Default istio.
	MeshConfigMap string
	// Mesh, when set, receives the MeshConfig YAML under the ConfigMap's
	// `mesh` key (nil when the ConfigMap or the key is absent) at start and
	// at every change. It returns an error to refuse it; the control plane
	// then keeps its last good mesh settings. Until Mesh has accepted one
	// version, no snapshot is published: proxies must not get policies
	// before the mesh settings they are meant to run with.
	Mesh func(data []byte) error
	// Services, when set, receives every Kubernetes Service the mesh
	// routes, sorted by hostname, at start and whenever one changes. The
	// slice is the callee's to keep.
	Services func([]registry.Service)
	// Debounce is how long the cluster must be quiet after a change before
	// a new snapshot is built, so a burst of edits is one push. Changes are
	// published at the latest ten periods after the first, even if events
	// keep coming. Zero means DefaultDebounce.
	Debounce time.Duration
	// Registerer receives the source's metrics; nil registers none.
	Registerer prometheus.Registerer
	// Logger receives one line per accepted change and per rejected
	// object. Nil discards logs.
	Logger *slog.Logger
	// Now is the clock of Events' timestamps. Default time.Now.
	Now func() time.Time
}

// Source publishes the Istio resources of a cluster as config snapshots,
// and its services and mesh config through Config's callbacks. Create it
// with New, then call Run; Current, Subscribe, LastError and Rejected are
// safe for concurrent use.
type Source struct {
	cfg     Config
	log     *slog.Logger
	kube    kubernetes.Interface
	dyn     dynamic.Interface
	metrics *metrics
	events  *eventSink

	factory      informers.SharedInformerFactory // services, slices, pods, namespaces
	meshFactory  informers.SharedInformerFactory // the mesh ConfigMap only
	dynFactory   dynamicinformer.DynamicSharedInformerFactory
	svcInformer  cache.SharedIndexInformer
	sliceIndexer cache.Indexer
	podIndexer   cache.Indexer
	nsIndexer    cache.Indexer
	synced       []cache.InformerSynced

	signal chan struct{} // capacity 1: something is dirty

	mu        sync.Mutex
	resources map[string]config.Resource // accepted, by KIND/NS/NAME
	rejected  map[string]Rejection       // by KIND/NS/NAME
	cfgDirty  bool
	svcDirty  map[string]struct{}         // service keys NS/NAME to rebuild
	services  map[string]registry.Service // built, by service key
	svcPods   map[string][]string         // service key -> pod keys its endpoints name
	podSvcs   map[string]map[string]struct{}
	mesh      meshState
	current   *config.Snapshot
	subs      map[*subscriber]struct{}
}

// meshState is the mesh ConfigMap's `mesh` key as last seen.
type meshState struct {
	data     []byte // nil: absent
	dirty    bool
	tried    bool // Config.Mesh was called at least once
	accepted bool // Config.Mesh accepted a version since start
}

// Rejection is an Istio object that the source leaves out, and why.
type Rejection struct {
	Kind      config.Kind
	Namespace string
	Name      string
	Err       error
	uid       string
	version   string // resourceVersion, so one version gets one Event
}

type subscriber struct {
	ch chan *config.Snapshot
}

// New returns a Source for cfg. It sets up clients and informers but
// contacts nothing and starts no goroutine: Run does.
func New(cfg Config) (*Source, error) {
	if cfg.REST == nil {
		return nil, errors.New("kubesource: REST config is required")
	}
	if cfg.TrustDomain == "" {
		cfg.TrustDomain = "cluster.local"
	}
	if cfg.DNSDomain == "" {
		cfg.DNSDomain = "cluster.local"
	}
	if cfg.RootNamespace == "" {
		cfg.RootNamespace = DefaultRootNamespace
	}
	if cfg.MeshConfigMap == "" {
		cfg.MeshConfigMap = DefaultMeshConfigMap
	}
	if cfg.Debounce <= 0 {
		cfg.Debounce = DefaultDebounce
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rc := rest.CopyConfig(cfg.REST)
	if rc.UserAgent == "" {
		rc.UserAgent = "zmesh-controlplane"
	}
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubesource: %w", err)
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubesource: %w", err)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	s := &Source{
		cfg:       cfg,
		log:       log.With("source", "kubernetes"),
		kube:      kube,
		dyn:       dyn,
		metrics:   m,
		signal:    make(chan struct{}, 1),
		resources: map[string]config.Resource{},
		rejected:  map[string]Rejection{},
		cfgDirty:  true, // the first flush publishes, even an empty cluster
		svcDirty:  map[string]struct{}{},
		services:  map[string]registry.Service{},
		svcPods:   map[string][]string{},
		podSvcs:   map[string]map[string]struct{}{},
		subs:      map[*subscriber]struct{}{},
	}
	s.events = newEventSink(kube, cfg.Now, s.log)
	if err := s.setupInformers(); err != nil {
		return nil, err
	}
	return s, nil
}

// Current returns the snapshot in force, or nil until the caches have
// synced (and the mesh config was accepted).
func (s *Source) Current() *config.Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.current
}

// LastError returns nil while every Istio object in the cluster is in
// force, else an error naming the rejected ones (zmesh_config_source_valid
// is 0 meanwhile).
func (s *Source) LastError() error {
	rs := s.Rejected()
	if len(rs) == 0 {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "kubesource: %d object(s) rejected:", len(rs))
	for _, r := range rs {
		fmt.Fprintf(&b, " %s %s/%s;", r.Kind, r.Namespace, r.Name)
	}
	return errors.New(strings.TrimSuffix(b.String(), ";"))
}

// Rejected returns the objects left out of the snapshot, sorted by kind,
// namespace and name.
func (s *Source) Rejected() []Rejection {
	s.mu.Lock()
	out := make([]Rejection, 0, len(s.rejected))
	for _, r := range s.rejected {
		out = append(out, r)
	}
	s.mu.Unlock()
	sortRejections(out)
	return out
}

func sortRejections(rs []Rejection) {
	slices.SortFunc(rs, func(a, b Rejection) int {
		return strings.Compare(string(a.Kind)+"/"+a.Namespace+"/"+a.Name, string(b.Kind)+"/"+b.Namespace+"/"+b.Name)
	})
}

// Subscribe returns a channel that receives the current snapshot at once
// (if there is one yet) and then every new one. The channel holds only the
// latest snapshot: a slow reader skips intermediate versions and never
// blocks the Source. cancel stops delivery and closes the channel; it may
// be called more than once.
func (s *Source) Subscribe() (<-chan *config.Snapshot, func()) {
	sub := &subscriber{ch: make(chan *config.Snapshot, 1)}
	s.mu.Lock()
	s.subs[sub] = struct{}{}
	if s.current != nil {
		sub.ch <- s.current
	}
	s.mu.Unlock()
	var once sync.Once
	return sub.ch, func() {
		once.Do(func() {
			s.mu.Lock()
			delete(s.subs, sub)
			close(sub.ch)
			s.mu.Unlock()
		})
	}
}

// Run checks that the cluster serves Istio's kinds, starts the informers,
// waits for their first lists, publishes the first snapshot and then
// follows changes until ctx is done, when it stops the informers and
// returns nil. It returns an error if Istio's CRDs are not installed or
// the first lists do not complete. Run must be called at most once.
func (s *Source) Run(ctx context.Context) error {
	if err := s.checkServed(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { s.events.run(ctx) })

	s.factory.Start(ctx.Done())
	s.meshFactory.Start(ctx.Done())
	s.dynFactory.Start(ctx.Done())
	defer s.dynFactory.Shutdown()
	defer s.meshFactory.Shutdown()
	defer s.factory.Shutdown()
	defer cancel() // before the Shutdowns, which wait for the informers to stop

	s.log.Info("waiting for the cluster's config")
	if !cache.WaitForCacheSync(ctx.Done(), s.synced...) {
		if ctx.Err() != nil {
			return nil
		}
		return errors.New("kubesource: informers did not sync")
	}
	s.flush()
	s.loop(ctx)
	return nil
}

// checkServed fails when a kind zmesh reads is not served: an informer on
// it would wait forever, and a control plane without Istio's CRDs has
// nothing to serve.
func (s *Source) checkServed() error {
	byGV := map[string][]string{}
	for _, k := range istioKinds {
		gv := k.gvr.GroupVersion().String()
		byGV[gv] = append(byGV[gv], k.gvr.Resource)
	}
	for gv, resources := range byGV {
		list, err := s.kube.Discovery().ServerResourcesForGroupVersion(gv)
		if err != nil {
			return fmt.Errorf("kubesource: %s is not served (are Istio's CRDs installed? zmesh install applies them): %w", gv, err)
		}
		for _, want := range resources {
			if !slices.ContainsFunc(list.APIResources, func(r metav1.APIResource) bool { return r.Name == want }) {
				return fmt.Errorf("kubesource: %s %s is not served (are Istio's CRDs installed? zmesh install applies them)", gv, want)
			}
		}
	}
	return nil
}

// loop waits for changes and flushes them once the cluster has been quiet
// for the debounce period (at most ten periods after the first change).
func (s *Source) loop(ctx context.Context) {
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	defer debounce.Stop()
	var pendingSince time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.signal:
			now := time.Now()
			if pendingSince.IsZero() {
				pendingSince = now
			}
			wait := s.cfg.Debounce
			if limit := pendingSince.Add(10 * s.cfg.Debounce).Sub(now); limit < wait {
				wait = max(limit, 0)
			}
			debounce.Reset(wait)
		case <-debounce.C:
			pendingSince = time.Time{}
			s.flush()
		}
	}
}

// poke tells loop that something is dirty.
func (s *Source) poke() {
	select {
	case s.signal <- struct{}{}:
	default:
	}
}

// flush hands what changed to its consumers: the mesh config first (so
// that the first snapshot goes out with its mesh settings), then the
// snapshot, then the services.
func (s *Source) flush() {
	s.mu.Lock()
	mesh := s.mesh
	s.mesh.dirty, s.mesh.tried = false, true
	s.mu.Unlock()
	// The mesh config is checked at the first flush and then only when it
	// changes: a refused version is reported once, not at every other event.
	if s.cfg.Mesh != nil && (mesh.dirty || !mesh.tried) {
		if err := s.cfg.Mesh(mesh.data); err != nil {
			s.log.Error("mesh config rejected; keeping the last good one", "configmap", s.cfg.RootNamespace+"/"+s.cfg.MeshConfigMap, "err", err)
		} else {
			s.mu.Lock()
			s.mesh.accepted = true
			s.mu.Unlock()
		}
	}

	s.mu.Lock()
	if s.cfgDirty && (s.cfg.Mesh == nil || s.mesh.accepted) {
		s.cfgDirty = false
		s.publishLocked()
	}
	counts := map[config.Kind]int{}
	for _, r := range s.rejected {
		counts[r.Kind]++
	}
	s.mu.Unlock()
	s.metrics.setRejected(counts)

	if svcs, changed := s.rebuildServices(); changed && s.cfg.Services != nil {
		s.cfg.Services(svcs)
	}
}

// publishLocked builds a snapshot of the accepted resources and sends it
// to subscribers if its version is new. s.mu must be held. The cost is one
// pass over the resources (versioning hashes them all, as the file source
// does), once per debounced burst rather than per event.
func (s *Source) publishLocked() {
	all := make([]config.Resource, 0, len(s.resources))
	for _, r := range s.resources {
		all = append(all, r)
	}
	snap := config.NewSnapshot(config.Version(all), all)
	if s.current != nil && snap.Version == s.current.Version {
		return
	}
	prev := ""
	if s.current != nil {
		prev = s.current.Version
	}
	s.log.Info("config updated", "version", snap.Version, "previous", prev, "resources", len(all), "rejected", len(s.rejected))
	s.current = snap
	for sub := range s.subs {
		publish(sub.ch, snap)
	}
}

// publish replaces whatever ch holds with snap. Only the Source sends,
// under its lock, so after the drain the send cannot block.
func publish(ch chan *config.Snapshot, snap *config.Snapshot) {
	select {
	case ch <- snap:
	default:
		select {
		case <-ch:
		default:
		}
		ch <- snap
	}
}
