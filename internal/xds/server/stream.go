package server

import (
	"context"
	"errors"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/zmesh/zmesh/internal/xds"
)

// Bounds on what a proxy may make the server hold or wait for.
const (
	maxNamesPerRequest  = 4096 // resource names subscribed in one request
	firstRequestTimeout = 30 * time.Second
)

// ads adapts Server to the generated ADS service; only delta is served.
type ads struct {
	discovery.UnimplementedAggregatedDiscoveryServiceServer
	s *Server
}

// DeltaAggregatedResources serves one proxy's delta ADS stream.
func (a *ads) DeltaAggregatedResources(st discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	return a.s.serve(st)
}

// StreamAggregatedResources refuses state-of-the-world ADS.
func (a *ads) StreamAggregatedResources(discovery.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	return status.Error(codes.Unimplemented, "zmesh serves delta ADS only")
}

var nonces atomic.Uint64

// stream is the state of one proxy's ADS stream. Everything but status is
// owned by the stream's handler goroutine; status is guarded by Server.mu.
type stream struct {
	s     *Server
	proxy xds.Proxy
	grpc  discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesServer
	kick  chan struct{} // capacity 1: inputs changed, rebuild the view

	reqs     <-chan *discovery.DeltaDiscoveryRequest // from receive
	recvErr  <-chan error                            // receive's end
	notAfter time.Time                               // the client certificate's expiry

	// subs are the subscribed types, by position in xds.TypeURLs (nil:
	// not subscribed): an array, not a map, as thousands of streams keep one.
	subs [numTypes]*subscription
	// version and encoded are the proxy's current view: its version and
	// its resources by type (in TypeURLs order), shared with the Index
	// that built them. The View itself is not kept: thousands of streams
	// need only what they send.
	version string
	encoded [numTypes][]xds.Resource

	status ProxyStatus
	nacked string // view version last NACKed; guarded by Server.mu
}

// subscription is one type URL of a stream.
type subscription struct {
	wildcard bool
	names    map[string]bool // subscribed by name; nil until a name is (wildcards need none)
	// What the proxy was sent and holds. After a response that carried a
	// whole list of its type (a wildcard subscription, the usual case)
	// sentAll is that list, shared with the Index that encoded it, and
	// sent is nil, so that thousands of streams keep no copy of every
	// name and version; otherwise sent maps resource name to version.
	sentAll []xds.Resource
	sent    map[string]string
	nonce   string // of the latest response
	version string // view version of the latest response
	acked   string // view version of the latest ACKed response
}

// sentVersions returns what the proxy holds as a map it may modify.
func (sub *subscription) sentVersions() map[string]string {
	if sub.sentAll == nil {
		if sub.sent == nil {
			sub.sent = map[string]string{}
		}
		return sub.sent
	}
	m := make(map[string]string, len(sub.sentAll))
	for _, r := range sub.sentAll {
		m[r.Name] = r.Version
	}
	return m
}

// forget records that the proxy no longer holds name.
func (sub *subscription) forget(name string) {
	if sub.sentAll != nil {
		sub.sent, sub.sentAll = sub.sentVersions(), nil
	}
	delete(sub.sent, name)
}

// numTypes is the number of type URLs of a View.
const numTypes = xds.NumTypes

// typeIndex returns the position of t in xds.TypeURLs(), or -1.
func typeIndex(t string) int {
	for i, k := range xds.TypeURLs() {
		if k == t {
			return i
		}
	}
	return -1
}

func (st *stream) poke() {
	select {
	case st.kick <- struct{}{}:
	default:
	}
}

// serve runs one proxy's stream: open admits it, run serves it. serve
// itself keeps no locals: its frame, and run's, stay on the stack of the
// stream's goroutine for the stream's life, parked in run's select, and a
// goroutine's stack only shrinks (at a GC) to four times what it holds
// there. With open's locals (authentication, admission, logging) in this
// frame the handler held ~3.5 KiB parked and kept a 16 KiB stack per proxy;
// without them, 8 KiB.
func (s *Server) serve(gs discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	st, first, err := s.open(gs)
	if err != nil {
		return err
	}
	defer s.close(st)
	return st.run(first)
}

// open authenticates and admits a stream, registers its proxy and returns
// the stream with its first request. On error, nothing stays registered.
//
//go:noinline
func (s *Server) open(gs discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) (*stream, *discovery.DeltaDiscoveryRequest, error) {
	ctx := gs.Context()
	select {
	case <-s.started:
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	select {
	case <-s.done:
		return nil, nil, status.Error(codes.Unavailable, "control plane is shutting down")
	default:
	}
	if s.cfgErr != nil {
		return nil, nil, status.Error(codes.Unavailable, "control plane is misconfigured")
	}
	who, err := s.authenticate(ctx)
	if err != nil {
		s.log.Warn("refused xDS stream", "error", err)
		return nil, nil, err
	}
	reqs := make(chan *discovery.DeltaDiscoveryRequest)
	recvErr := make(chan error, 1)
	go receive(gs, reqs, recvErr)

	first, err := s.firstRequest(ctx, reqs, recvErr)
	if err != nil {
		return nil, nil, err
	}
	proxy, err := admit(first.GetNode(), who)
	if err != nil {
		s.log.Warn("refused xDS stream", "identity", who.id, "node", first.GetNode().GetId(), "error", err)
		return nil, nil, err
	}
	if err := s.register(proxy.Workload); err != nil {
		s.log.Warn("refused xDS stream", "identity", who.id, "proxy", proxy.ID, "error", err)
		if errors.Is(err, errNodeTaken) {
			return nil, nil, status.Errorf(codes.PermissionDenied, "node %s: %v", proxy.ID, err)
		}
		return nil, nil, status.Error(codes.InvalidArgument, err.Error())
	}

	st := &stream{
		s: s, proxy: proxy, grpc: gs,
		kick:     make(chan struct{}, 1),
		reqs:     reqs,
		recvErr:  recvErr,
		notAfter: who.notAfter,
		status:   ProxyStatus{ID: proxy.ID, Identity: who.id, ConnectedAt: s.cfg.Now()},
	}
	s.mu.Lock()
	s.streams[st] = struct{}{}
	s.mu.Unlock()
	if proxy.Gateway {
		// Run asks for the credentials this gateway needs.
		s.wake()
	}
	s.log.Info("proxy connected", "proxy", proxy.ID, "identity", who.id)
	return st, first, nil
}

// receive passes a stream's requests to its handler until Recv fails, or
// the stream's context ends. It is the stream's second goroutine: a
// handler blocked in Recv could not end the stream on its certificate's
// expiry, a push's failure or the server's shutdown.
func receive(gs discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesServer, reqs chan<- *discovery.DeltaDiscoveryRequest, recvErr chan<- error) {
	ctx := gs.Context()
	for {
		r, err := gs.Recv()
		if err != nil {
			recvErr <- err
			return
		}
		select {
		case reqs <- r:
		case <-ctx.Done():
			return
		}
	}
}

// close undoes open once the stream has ended.
//
//go:noinline
func (s *Server) close(st *stream) {
	s.log.Info("proxy disconnected", "proxy", st.proxy.ID)
	s.mu.Lock()
	delete(s.streams, st)
	s.mu.Unlock()
	s.unregister(st.proxy.ID)
}

// run serves an admitted stream until it ends: its requests, the pushes
// its kicks ask for, its certificate's expiry and the server's shutdown.
func (st *stream) run(first *discovery.DeltaDiscoveryRequest) error {
	s, ctx := st.s, st.grpc.Context()
	// The stream ends when the client certificate expires: the proxy
	// reconnects with its rotated certificate and is authenticated again.
	expiry := time.NewTimer(time.Until(st.notAfter))
	defer expiry.Stop()

	st.rebuild()
	if err := st.handle(first); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.done:
			return status.Error(codes.Unavailable, "control plane is shutting down")
		case <-expiry.C:
			return status.Error(codes.Unauthenticated, "client certificate expired")
		case err := <-st.recvErr:
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		case r := <-st.reqs:
			if err := st.handle(r); err != nil {
				return err
			}
		case <-st.kick:
			if st.rebuild() {
				if err := st.push(); err != nil {
					return err
				}
			}
		}
	}
}

// firstRequest waits for a stream's first request, at most
// firstRequestTimeout. (Its own function, so that the timer is not kept
// for the stream's life.)
func (s *Server) firstRequest(ctx context.Context, reqs <-chan *discovery.DeltaDiscoveryRequest, recvErr <-chan error) (*discovery.DeltaDiscoveryRequest, error) {
	t := time.NewTimer(firstRequestTimeout)
	defer t.Stop()
	select {
	case r := <-reqs:
		return r, nil
	case err := <-recvErr:
		return nil, err
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.done:
		return nil, status.Error(codes.Unavailable, "control plane is shutting down")
	case <-t.C:
		return nil, status.Error(codes.DeadlineExceeded, "no request within "+firstRequestTimeout.String())
	}
}

// rebuild builds the proxy's view from the current inputs and reports
// whether it differs from the last one.
func (st *stream) rebuild() bool {
	in := st.s.current()
	if in == nil {
		return false
	}
	v, enc := in.index.Build(st.proxy)
	if st.version != "" && st.version == v.Version {
		return false
	}
	st.version = v.Version
	for i, t := range xds.TypeURLs() {
		st.encoded[i] = enc[t]
	}
	return true
}

// maxSlotHold bounds how long one push holds its slot among
// MaxConcurrentPushes: a proxy that stops reading blocks its own stream's
// Send on flow control, and must not hold up the pushes of others.
const maxSlotHold = time.Second

// pushSlot waits for a slot to push in and returns its release (safe to
// call twice), or an error when the stream or the server ends first.
func (st *stream) pushSlot() (release func(), err error) {
	select {
	case st.s.pushSlots <- struct{}{}:
	case <-st.grpc.Context().Done():
		return nil, st.grpc.Context().Err()
	case <-st.s.done:
		return nil, status.Error(codes.Unavailable, "control plane is shutting down")
	}
	var once sync.Once
	free := func() { once.Do(func() { <-st.s.pushSlots }) }
	t := time.AfterFunc(maxSlotHold, free)
	return func() { t.Stop(); free() }, nil
}

// push sends every subscribed type of the current view: a response per
// type even when nothing of that type changed, so that the proxy sees one
// view version across all types and applies it whole.
func (st *stream) push() error {
	release, err := st.pushSlot()
	if err != nil {
		return err
	}
	defer release()
	for i, t := range xds.TypeURLs() {
		if sub := st.subs[i]; sub != nil {
			if err := st.send(t, sub); err != nil {
				return err
			}
		}
	}
	return nil
}

// handle processes one request: an ACK or NACK of an earlier response,
// and subscription changes.
func (st *stream) handle(r *discovery.DeltaDiscoveryRequest) error {
	t := r.GetTypeUrl()
	if !knownType(t) {
		st.s.log.Warn("unknown type URL requested", "proxy", st.proxy.ID, "type", t)
		return nil
	}
	if len(r.GetResourceNamesSubscribe()) > maxNamesPerRequest || len(r.GetResourceNamesUnsubscribe()) > maxNamesPerRequest {
		return status.Errorf(codes.InvalidArgument, "too many resource names in one request (max %d)", maxNamesPerRequest)
	}
	i := typeIndex(t)
	sub := st.subs[i]
	if sub != nil && r.GetResponseNonce() != "" && r.GetResponseNonce() == sub.nonce {
		st.ackOrNack(t, sub, r)
	}
	changed := false
	if sub == nil {
		// The first request for a type subscribes it; no names (or "*")
		// means every resource of the type, the wildcard.
		sub = &subscription{}
		st.subs[i] = sub
		sub.wildcard = len(r.GetResourceNamesSubscribe()) == 0
		changed = true
	}
	for _, n := range r.GetResourceNamesSubscribe() {
		if n == "*" {
			sub.wildcard = true
		} else if !sub.names[n] {
			if sub.names == nil {
				sub.names = map[string]bool{}
			}
			sub.names[n] = true
		}
		changed = true
	}
	for _, n := range r.GetResourceNamesUnsubscribe() {
		if n == "*" {
			sub.wildcard = false
		}
		delete(sub.names, n)
		sub.forget(n)
	}
	if changed && st.version != "" {
		release, err := st.pushSlot()
		if err != nil {
			return err
		}
		defer release()
		return st.send(t, sub)
	}
	return nil
}

func (st *stream) ackOrNack(t string, sub *subscription, r *discovery.DeltaDiscoveryRequest) {
	s := st.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := r.GetErrorDetail(); d != nil {
		st.status.LastNack = d.GetMessage()
		if st.nacked != sub.version {
			// A proxy NACKs a refused view once per type.
			st.nacked = sub.version
			s.nacks++
		}
		s.log.Warn("proxy rejected config", "proxy", st.proxy.ID, "type", t, "version", sub.version, "error", d.GetMessage())
		return
	}
	sub.acked = sub.version
	for _, other := range st.subs {
		if other != nil && other.acked != sub.version {
			return
		}
	}
	if st.status.AckedVersion != sub.version {
		s.log.Debug("proxy applied config", "proxy", st.proxy.ID, "version", sub.version)
	}
	st.status.AckedVersion = sub.version
	if sub.version == st.status.SentVersion {
		st.status.LastNack = ""
	}
}

// send sends one response for type t with what changed since the last
// response, possibly nothing (the proxy still learns the view version).
func (st *stream) send(t string, sub *subscription) error {
	resp := &discovery.DeltaDiscoveryResponse{
		TypeUrl:           t,
		SystemVersionInfo: st.version,
		Nonce:             strconv.FormatUint(nonces.Add(1), 36),
	}
	var list []xds.Resource
	if i := typeIndex(t); i >= 0 {
		list = st.encoded[i]
	}
	sent := sub.sentVersions()
	present := make(map[string]bool, len(list))
	for _, r := range list {
		if !sub.wildcard && !sub.names[r.Name] {
			continue
		}
		present[r.Name] = true
		if v, ok := sent[r.Name]; ok && v == r.Version {
			continue
		}
		resp.Resources = append(resp.Resources, &discovery.Resource{Name: r.Name, Version: r.Version, Resource: r.Body})
	}
	for name := range sent {
		if !present[name] {
			resp.RemovedResources = append(resp.RemovedResources, name)
		}
	}
	if err := st.grpc.Send(resp); err != nil {
		return err
	}
	if len(present) == len(list) {
		// The proxy now holds exactly list.
		sub.sentAll, sub.sent = list, nil
		if list == nil {
			sub.sentAll = []xds.Resource{}
		}
	} else {
		for _, r := range resp.Resources {
			sent[r.Name] = r.Version
		}
		for _, name := range resp.RemovedResources {
			delete(sent, name)
		}
		sub.sentAll, sub.sent = nil, sent
	}
	sub.nonce, sub.version = resp.Nonce, st.version
	st.s.mu.Lock()
	st.status.SentVersion = st.version
	st.s.mu.Unlock()
	return nil
}

func knownType(t string) bool {
	for _, k := range xds.TypeURLs() {
		if k == t {
			return true
		}
	}
	return false
}

var _ discovery.AggregatedDiscoveryServiceServer = (*ads)(nil)
