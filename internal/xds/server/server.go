package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/registry"
	"github.com/zmesh/zmesh/internal/xds"
)

// Defaults of Config.
const (
	DefaultGrace = 5 * time.Second
	// DefaultRestoreGrace is how long a registration restored after a
	// restart waits for its proxy. Every proxy reconnects at once then:
	// at 10,000 proxies the wave takes longer than DefaultGrace, and each
	// service whose proxy was not back yet would be pushed to every proxy
	// as gone, then as back again.
	DefaultRestoreGrace = time.Minute
	DefaultDebounce     = 50 * time.Millisecond
	// DefaultMaxConcurrentPushes bounds the pushes being encoded and
	// written at once, whatever the number of proxies a change or a
	// reconnect wave touches.
	DefaultMaxConcurrentPushes = 64
)

// Config configures a Server.
type Config struct {
	// Registry receives the workloads that proxies register; its services,
	// with those of the snapshot's ServiceEntries that registry.Admit
	// admits, are pushed to proxies. Required.
	Registry *registry.Store
	// Mesh is pushed to every proxy. Mesh.TrustDomain is required: a proxy's
	// client certificate must carry a SPIFFE ID in it.
	Mesh xds.Mesh
	// Snapshot is the initial config. Nil: proxies receive nothing until the
	// first Update, so no proxy ever runs on a view built without config.
	Snapshot *config.Snapshot
	// Grace is how long a proxy's registration outlives its stream, to ride
	// out reconnects. Default DefaultGrace.
	Grace time.Duration
	// RestoreGrace is Grace for the registrations given to Restore.
	// Default DefaultRestoreGrace (at least Grace).
	RestoreGrace time.Duration
	// Debounce coalesces bursts of changes into one push. Default DefaultDebounce.
	Debounce time.Duration
	// MaxConcurrentPushes bounds how many streams send a push at once, so
	// that a change every proxy sees, or every proxy reconnecting after a
	// restart, does not hold every view's gRPC buffers at the same time.
	// Default DefaultMaxConcurrentPushes.
	MaxConcurrentPushes int
	// WantCredentials, when set, is told which gateway credentials the
	// connected gateway proxies need (xds.CredentialsWanted of each: the
	// Secrets their Gateways name, in their own namespace), sorted by
	// key, whenever that set changes. The caller fetches those and hands
	// them to SetCredentials. It is called from Run's goroutine and must
	// not block.
	WantCredentials func([]xds.CredentialRef)
	// Now returns the current time (for ProxyStatus). Default time.Now.
	Now func() time.Time
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Validate reports whether c can run.
func (c Config) Validate() error {
	if c.Registry == nil {
		return errors.New("xds server: Registry is required")
	}
	if c.Mesh.TrustDomain == "" {
		return errors.New("xds server: Mesh.TrustDomain is required")
	}
	return nil
}

// Server serves delta ADS to proxies. Create it with New, attach it to a
// gRPC server with Register, and run its push loop with Run. Streams that
// arrive before Run starts wait for it; when Run returns, every stream is
// closed (so grpc.Server.GracefulStop can finish).
type Server struct {
	cfg    Config
	cfgErr error
	log    *slog.Logger

	snapMu  sync.Mutex
	snap    *config.Snapshot
	mesh    xds.Mesh // Config.Mesh, or what SetMesh gave since
	creds   []xds.Credential
	snapSig chan struct{} // capacity 1: a snapshot or mesh update is pending

	pushSlots chan struct{} // a token per push in progress (MaxConcurrentPushes)

	started chan struct{} // closed when Run starts
	done    chan struct{} // closed when Run returns

	mu      sync.Mutex
	state   *inputs // what views are built from; nil until Run has a snapshot
	streams map[*stream]struct{}
	regs    map[string]*registration // by node ID
	ran     bool
	nacks   uint64 // views refused by a proxy, counted once per stream and version
}

// inputs is one consistent set of what views are built from.
type inputs struct {
	index    *xds.Index            // every view, from the snapshot, the admitted services and the mesh
	rejected []*config.SourceError // resources of the snapshot left out of the services
}

// registration tracks the streams of one node ID, so that its workload is
// removed from the registry only when its last stream has been gone for
// the grace period.
type registration struct {
	identity string
	streams  int
	timer    *time.Timer
}

// New returns a Server for cfg. A Config that does not Validate makes Run
// return its error (and streams are refused meanwhile); call
// Config.Validate first to report it earlier.
func New(cfg Config) *Server {
	if cfg.Grace <= 0 {
		cfg.Grace = DefaultGrace
	}
	if cfg.RestoreGrace <= 0 {
		cfg.RestoreGrace = max(DefaultRestoreGrace, cfg.Grace)
	}
	if cfg.Debounce <= 0 {
		cfg.Debounce = DefaultDebounce
	}
	if cfg.MaxConcurrentPushes <= 0 {
		cfg.MaxConcurrentPushes = DefaultMaxConcurrentPushes
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Server{
		cfgErr:    cfg.Validate(),
		cfg:       cfg,
		log:       cfg.Logger.With("component", "xds-server"),
		snap:      cfg.Snapshot,
		mesh:      cfg.Mesh,
		snapSig:   make(chan struct{}, 1),
		pushSlots: make(chan struct{}, cfg.MaxConcurrentPushes),
		started:   make(chan struct{}),
		done:      make(chan struct{}),
		streams:   map[*stream]struct{}{},
		regs:      map[string]*registration{},
	}
}

// Register attaches the ADS service to gs. The gRPC server must use TLS
// with client certificates verified against the mesh's trust bundle when
// given (tls.VerifyClientCertIfGiven): the ADS stream refuses proxies that
// presented none.
func (s *Server) Register(gs *grpc.Server) {
	discovery.RegisterAggregatedDiscoveryServiceServer(gs, &ads{s: s})
}

// Update replaces the config snapshot; Run pushes the resulting views. It
// does not block.
func (s *Server) Update(snap *config.Snapshot) {
	s.snapMu.Lock()
	s.snap = snap
	s.snapMu.Unlock()
	select {
	case s.snapSig <- struct{}{}:
	default:
	}
}

// SetMesh replaces the mesh settings pushed to every proxy (a MeshConfig
// edited while running); Run pushes the resulting views. The trust domain
// cannot change: proxies are authenticated against it.
func (s *Server) SetMesh(m xds.Mesh) error {
	if m.TrustDomain != s.cfg.Mesh.TrustDomain {
		return fmt.Errorf("xds server: mesh trust domain %q differs from %q, which proxies are authenticated against", m.TrustDomain, s.cfg.Mesh.TrustDomain)
	}
	s.snapMu.Lock()
	s.mesh = m
	s.snapMu.Unlock()
	s.wake()
	return nil
}

// SetCredentials replaces the gateway credentials (the Secrets that
// WantCredentials asked for, as read); Run pushes each to the gateway
// proxies of its namespace whose Gateways name it, and to no other proxy.
// The slice is the server's to keep.
func (s *Server) SetCredentials(creds []xds.Credential) {
	s.snapMu.Lock()
	s.creds = creds
	s.snapMu.Unlock()
	s.wake()
}

// wake makes Run rebuild its inputs.
func (s *Server) wake() {
	select {
	case s.snapSig <- struct{}{}:
	default:
	}
}

// wantCredentials tells Config.WantCredentials what the gateways
// connected now need of ix, when it differs from last (a key of the
// set); it returns the new key.
func (s *Server) wantCredentials(ix *xds.Index, last string) string {
	if s.cfg.WantCredentials == nil {
		return last
	}
	seen := map[string]xds.CredentialRef{}
	s.mu.Lock()
	for st := range s.streams {
		for _, ref := range ix.CredentialsWanted(st.proxy) {
			seen[ref.Key()] = ref
		}
	}
	s.mu.Unlock()
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	key := strings.Join(keys, ",")
	if key == last {
		return last
	}
	refs := make([]xds.CredentialRef, len(keys))
	for i, k := range keys {
		refs[i] = seen[k]
	}
	s.cfg.WantCredentials(refs)
	return key
}

// Run rebuilds the inputs of every view (an xds.Index) whenever the config
// snapshot, the mesh settings or the registry changes, and tells the
// streams whose view may have changed to push what changed for their
// proxy: after an edit of one namespace's policies, only that namespace's
// proxies rebuild their view. It returns when ctx is done, after closing
// every stream. Run may be called only once.
func (s *Server) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.ran {
		s.mu.Unlock()
		return errors.New("xds server: Run called twice")
	}
	s.ran = true
	s.mu.Unlock()
	close(s.started)
	defer s.shutdown()
	if s.cfgErr != nil {
		return s.cfgErr
	}

	var (
		lastSnap  *config.Snapshot
		declared  []registry.Declared
		admission *registry.Admission
		index     *xds.Index // of the inputs in force
		wanted    = "-"      // the credentials last asked for ("-": never asked)
	)
	for {
		regChanged := s.cfg.Registry.Changed()
		s.snapMu.Lock()
		snap, mesh, creds := s.snap, s.mesh, s.creds
		s.snapMu.Unlock()
		if snap != nil {
			if snap != lastSnap {
				declared = registry.Declarations(snap, s.cfg.Mesh.TrustDomain)
				lastSnap = snap
			}
			prev := admission
			admission = registry.Admit(s.cfg.Registry.Services(), declared, prev)
			s.logRejections(prev, admission)
			// Services without a virtual address get one, so that their
			// names resolve inside captured workloads.
			next, err := xds.NewIndexWithCredentials(snap, registry.AllocateAddresses(admission.Services), mesh, creds, index)
			if err != nil {
				// Not expected: config and mesh settings are validated
				// before they get here. Keep pushing the last good views.
				s.log.Error("cannot encode views; keeping the last good ones", "error", err)
			} else {
				all, namespaces := next.Changes(index)
				index = next
				s.mu.Lock()
				s.state = &inputs{index: next, rejected: admission.Rejected}
				for st := range s.streams {
					if all || namespaces[st.proxy.Namespace] {
						st.poke()
					}
				}
				s.mu.Unlock()
			}
		}
		if index != nil {
			wanted = s.wantCredentials(index, wanted)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-regChanged:
		case <-s.snapSig:
		}
		// Coalesce a burst (a config directory rewritten, many proxies
		// reconnecting) into one push.
		t := time.NewTimer(s.cfg.Debounce)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// logRejections logs, once each, the ServiceEntries that next leaves out
// and prev did not (or for another reason), and those back in.
func (s *Server) logRejections(prev, next *registry.Admission) {
	was := map[string]string{}
	if prev != nil {
		for _, r := range prev.Rejected {
			was[r.Key] = r.Error()
		}
	}
	now := map[string]bool{}
	for _, r := range next.Rejected {
		now[r.Key] = true
		if was[r.Key] == r.Error() {
			continue
		}
		ns, name, _ := strings.Cut(r.Key, "/")
		s.log.Error("config resource rejected: proxies would refuse it; pushing everything else",
			"kind", string(r.Kind), "namespace", ns, "name", name, "source", r.Source, "error", r.Err.Error())
	}
	for key := range was {
		if !now[key] {
			s.log.Info("config resource no longer rejected", "resource", key)
		}
	}
}

// Rejected returns the resources of the current snapshot that are left
// out of what proxies are sent because proxies would refuse them (see
// registry.Admit), each with why, sorted by namespace and name. The
// result is shared: do not modify it.
func (s *Server) Rejected() []*config.SourceError {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == nil {
		return nil
	}
	return s.state.rejected
}

// Stats are counts about the proxies' answers, for metrics.
type Stats struct {
	// RejectedPushes counts the views proxies refused (NACKed), once per
	// proxy stream and view version whatever the number of types NACKed.
	RejectedPushes uint64
	// ProxiesNacking is the number of connected proxies whose latest
	// answer to a push was a NACK.
	ProxiesNacking int
}

// Stats returns the current Stats.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{RejectedPushes: s.nacks}
	for str := range s.streams {
		if str.status.LastNack != "" {
			st.ProxiesNacking++
		}
	}
	return st
}

func (s *Server) shutdown() {
	close(s.done)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.regs {
		if r.timer != nil {
			r.timer.Stop()
		}
	}
}

// current returns the inputs views are built from now, or nil.
func (s *Server) current() *inputs {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

// register records a stream of proxy w (authenticated as w.Identity) and
// puts w in the registry. A node ID held by another identity (connected or
// within its grace period) is refused: one workload must not replace
// another's registration.
func (s *Server) register(w registry.Workload) error {
	key := w.Key()
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.regs[key]
	if r != nil && r.identity != w.Identity {
		return errNodeTaken
	}
	if err := s.cfg.Registry.Upsert(w); err != nil {
		return err
	}
	if r == nil {
		r = &registration{identity: w.Identity}
		s.regs[key] = r
	}
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	r.streams++
	return nil
}

// Restore puts back workloads that were registered before the control
// plane restarted, as if their streams had just dropped: each stays in the
// registry for RestoreGrace and leaves it unless its proxy reconnects.
// Without this, a restarted control plane would push the first proxies to
// reconnect a view without the services of those not yet back, and they
// would drop routes that are still good. Call Restore before Run.
func (s *Server) Restore(ws []registry.Workload) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, w := range ws {
		key := w.Key()
		if s.regs[key] != nil {
			continue
		}
		if err := s.cfg.Registry.Upsert(w); err != nil {
			s.log.Warn("not restoring registration", "proxy", key, "err", err)
			continue
		}
		r := &registration{identity: w.Identity}
		s.regs[key] = r
		s.expireLocked(key, r, s.cfg.RestoreGrace)
	}
}

var errNodeTaken = errors.New("node ID is registered by another identity")

// unregister ends one stream of node key; its workload leaves the registry
// after the grace period unless a stream for it comes back.
func (s *Server) unregister(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.regs[key]
	if r == nil {
		return
	}
	r.streams--
	if r.streams > 0 {
		return
	}
	select {
	case <-s.done:
		return // shutting down: leave the registry as it is
	default:
	}
	s.expireLocked(key, r, s.cfg.Grace)
}

// expireLocked removes registration r of node key after grace unless a
// stream for it has come back by then. s.mu must be held.
func (s *Server) expireLocked(key string, r *registration, grace time.Duration) {
	r.timer = time.AfterFunc(grace, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.regs[key] == r && r.streams == 0 {
			delete(s.regs, key)
			s.cfg.Registry.Remove(key)
			s.log.Info("proxy registration expired", "proxy", key)
		}
	})
}

// Status returns the state of every connected proxy stream, sorted by
// node ID then connection time.
func (s *Server) Status() []ProxyStatus {
	s.mu.Lock()
	out := make([]ProxyStatus, 0, len(s.streams))
	for st := range s.streams {
		ps := st.status
		ps.Synced = ps.SentVersion != "" && ps.AckedVersion == ps.SentVersion
		out = append(out, ps)
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].ID != out[j].ID {
			return out[i].ID < out[j].ID
		}
		return out[i].ConnectedAt.Before(out[j].ConnectedAt)
	})
	return out
}

// ProxyStatus is what the control plane knows of one connected proxy.
type ProxyStatus struct {
	ID           string    `json:"id"`       // node ID, NAMESPACE/NAME
	Identity     string    `json:"identity"` // SPIFFE ID of its client certificate
	ConnectedAt  time.Time `json:"connectedAt"`
	SentVersion  string    `json:"sentVersion,omitempty"`  // latest view version pushed
	AckedVersion string    `json:"ackedVersion,omitempty"` // latest view version ACKed for every type
	Synced       bool      `json:"synced"`                 // the proxy ACKed what was last pushed
	LastNack     string    `json:"lastNack,omitempty"`     // error of the latest NACK, cleared by a later ACK
}
