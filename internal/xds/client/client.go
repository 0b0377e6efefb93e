package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/zmesh/zmesh/internal/xds"
)

// Defaults of Config.
const (
	DefaultBackoffMin = 100 * time.Millisecond
	// DefaultBackoffMax caps the delay between attempts: with full jitter
	// the attempts of N proxies that lost the control plane arrive at
	// about N/7.5s a second at the cap, instead of N/3.75s with a 5 s cap
	// and jitter over its upper half, which at 10,000 proxies was more TLS
	// handshakes than a busy 2-core control plane finished within their
	// time-out.
	DefaultBackoffMax     = 15 * time.Second
	DefaultMaxMessageSize = 16 << 20
)

// Config configures a Client.
type Config struct {
	// Address of the control plane, host:port. Required.
	Address string
	// TLS for the connection; it must present the proxy's mesh certificate
	// (best through GetClientCertificate, so a rotated certificate is used
	// at the next reconnect) and trust the control plane. Required.
	TLS *tls.Config
	// Proxy is the node ID and workload the proxy registers: name,
	// namespace, service account, labels, inbound address, services.
	// ID defaults to NAMESPACE/NAME.
	Proxy xds.Proxy
	// DNSDomain is used for the view's Mesh.DNSDomain when the control plane
	// does not send one.
	DNSDomain string
	// Apply installs a complete new view. It is called from Run's goroutine,
	// one view at a time. An error rejects the view (it is NACKed with the
	// error's message) and the proxy must keep its previous view. Required.
	Apply func(*xds.View) error
	// BackoffMin and BackoffMax bound the delay between reconnection
	// attempts (defaults DefaultBackoffMin, DefaultBackoffMax).
	BackoffMin, BackoffMax time.Duration
	// MaxMessageSize bounds each message received (default DefaultMaxMessageSize).
	MaxMessageSize int
	// Dial opens the connection to Address; nil dials TCP. The scale
	// simulator sets it to bind many source addresses and count bytes.
	Dial func(ctx context.Context, address string) (net.Conn, error)
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Client keeps a proxy's view in sync with the control plane.
type Client struct {
	cfg  Config
	log  *slog.Logger
	node *core.Node

	synced     chan struct{}
	syncedOnce sync.Once

	mu      sync.Mutex
	current *xds.View
}

// New returns a Client for cfg; it does not connect until Run.
func New(cfg Config) (*Client, error) {
	if cfg.Address == "" {
		return nil, errors.New("xds client: Address is required")
	}
	if cfg.TLS == nil {
		return nil, errors.New("xds client: TLS is required")
	}
	if cfg.Apply == nil {
		return nil, errors.New("xds client: Apply is required")
	}
	if cfg.Proxy.ID == "" {
		cfg.Proxy.ID = cfg.Proxy.Namespace + "/" + cfg.Proxy.Name
	}
	if ns, name, ok := strings.Cut(cfg.Proxy.ID, "/"); !ok || ns == "" || name == "" {
		return nil, fmt.Errorf("xds client: proxy ID %q is not NAMESPACE/NAME", cfg.Proxy.ID)
	}
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = DefaultBackoffMin
	}
	if cfg.BackoffMax < cfg.BackoffMin {
		cfg.BackoffMax = max(DefaultBackoffMax, cfg.BackoffMin)
	}
	if cfg.MaxMessageSize <= 0 {
		cfg.MaxMessageSize = DefaultMaxMessageSize
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Client{
		cfg:    cfg,
		log:    cfg.Logger.With("component", "xds-client", "proxy", cfg.Proxy.ID),
		node:   &core.Node{Id: cfg.Proxy.ID, UserAgentName: "zmesh", Metadata: xds.ProxyMetadata(cfg.Proxy)},
		synced: make(chan struct{}),
	}, nil
}

// Synced returns a channel closed after the first view was applied.
func (c *Client) Synced() <-chan struct{} { return c.synced }

// View returns the last applied view, or nil before the first.
func (c *Client) View() *xds.View {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.current
}

// Run connects to the control plane and keeps the view in sync until ctx
// is done, reconnecting with exponential backoff (from BackoffMin, doubling
// to BackoffMax, each wait drawn uniformly below it) whenever the stream
// breaks; a stream that received a response starts the backoff over. The last applied
// view stays in force meanwhile. It returns nil when ctx is done.
func (c *Client) Run(ctx context.Context) error {
	delay := c.cfg.BackoffMin
	for {
		progressed, err := c.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if progressed {
			delay = c.cfg.BackoffMin
		}
		wait := jitter(delay, rand.N[time.Duration])
		c.log.Warn("config stream ended, reconnecting", "error", err, "after", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		delay = min(delay*2, c.cfg.BackoffMax)
	}
}

// jitter is the wait before the next attempt at a backoff of delay: full
// jitter, uniform in [0, delay), so that proxies that lost the control
// plane together do not come back together. randN is rand.N.
func jitter(delay time.Duration, randN func(time.Duration) time.Duration) time.Duration {
	if delay <= 0 {
		return 0
	}
	return randN(delay)
}

// connectTimeout bounds one connection attempt, TLS handshake included. It
// is longer than the control plane's own handshake time-out (10 s by
// default): on an overloaded control plane, a client that gave up on a
// handshake that was about to finish only adds a new one to the queue.
const connectTimeout = 20 * time.Second

// session runs one ADS stream on a connection of its own, so that every
// reconnection makes a new TLS handshake with the certificate the TLS
// config returns then (the agent may have rotated it; the control plane
// ends streams whose certificate expires). It reports whether the stream
// got as far as receiving a response (so backoff can start over).
func (c *Client) session(ctx context.Context) (progressed bool, err error) {
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(credentials.NewTLS(c.cfg.TLS)),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(c.cfg.MaxMessageSize), grpc.MaxCallSendMsgSize(c.cfg.MaxMessageSize)),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.DefaultConfig, MinConnectTimeout: connectTimeout}),
	}
	if c.cfg.Dial != nil {
		opts = append(opts, grpc.WithContextDialer(c.cfg.Dial))
	}
	conn, err := grpc.NewClient(c.cfg.Address, opts...)
	if err != nil {
		return false, fmt.Errorf("xds client: %w", err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		return false, err
	}
	for i, t := range xds.TypeURLs() {
		req := &discovery.DeltaDiscoveryRequest{TypeUrl: t}
		if i == 0 {
			req.Node = c.node
		}
		if err := st.Send(req); err != nil {
			return false, err
		}
	}
	s := newState()
	for {
		resp, err := st.Recv()
		if err != nil {
			return progressed, err
		}
		progressed = true
		for _, req := range c.receive(s, resp) {
			if err := st.Send(req); err != nil {
				return progressed, err
			}
		}
	}
}

// state is what one stream has received: the candidate resource set.
type state struct {
	resources map[string]map[string]*anypb.Any // type URL -> name -> MCP resource
	versions  map[string]string                // type URL -> view version of its latest response
	pending   map[string]string                // type URL -> nonce not yet ACKed or NACKed
}

func newState() *state {
	s := &state{resources: map[string]map[string]*anypb.Any{}, versions: map[string]string{}, pending: map[string]string{}}
	for _, t := range xds.TypeURLs() {
		s.resources[t] = map[string]*anypb.Any{}
	}
	return s
}

// receive merges one response into the candidate set. Once every type has
// been received at the same view version, the candidate is a complete view:
// it is applied (unless already applied) and every pending response is
// ACKed, or, if it is rejected, NACKed. It returns the requests to send.
func (c *Client) receive(s *state, resp *discovery.DeltaDiscoveryResponse) []*discovery.DeltaDiscoveryRequest {
	t := resp.GetTypeUrl()
	set, ok := s.resources[t]
	if !ok {
		c.log.Warn("control plane sent an unknown type", "type", t)
		return []*discovery.DeltaDiscoveryRequest{nack(t, resp.GetNonce(), "unknown type URL")}
	}
	for _, r := range resp.GetResources() {
		if r.GetResource() == nil {
			delete(set, r.GetName())
			continue
		}
		set[r.GetName()] = r.GetResource()
	}
	for _, name := range resp.GetRemovedResources() {
		delete(set, name)
	}
	version := resp.GetSystemVersionInfo()
	s.versions[t], s.pending[t] = version, resp.GetNonce()
	for _, typ := range xds.TypeURLs() {
		if s.versions[typ] != version {
			return nil // the rest of this version is still on its way
		}
	}
	applyErr := c.apply(version, s.resources)
	reqs := make([]*discovery.DeltaDiscoveryRequest, 0, len(s.pending))
	for _, typ := range xds.TypeURLs() {
		nonce, ok := s.pending[typ]
		if !ok {
			continue
		}
		if applyErr != nil {
			reqs = append(reqs, nack(typ, nonce, applyErr.Error()))
		} else {
			reqs = append(reqs, &discovery.DeltaDiscoveryRequest{TypeUrl: typ, ResponseNonce: nonce})
		}
		delete(s.pending, typ)
	}
	return reqs
}

// apply decodes and applies the complete candidate view of version, unless
// it is the view already applied (a resync after reconnecting).
func (c *Client) apply(version string, resources map[string]map[string]*anypb.Any) error {
	c.mu.Lock()
	cur := c.current
	c.mu.Unlock()
	if cur != nil && cur.Version == version {
		return nil
	}
	v, err := xds.Decode(version, resources)
	if err != nil {
		c.log.Error("rejected config: cannot decode", "version", version, "error", err)
		return err
	}
	if v.Mesh.DNSDomain == "" {
		v.Mesh.DNSDomain = c.cfg.DNSDomain
	}
	if err := c.cfg.Apply(v); err != nil {
		c.log.Error("rejected config: keeping the last good one", "version", version, "error", err)
		return err
	}
	c.mu.Lock()
	c.current = v
	c.mu.Unlock()
	c.syncedOnce.Do(func() { close(c.synced) })
	c.log.Info("applied config", "version", version,
		"authorizationPolicies", len(v.AuthorizationPolicies), "peerAuthentications", len(v.PeerAuthentications),
		"requestAuthentications", len(v.RequestAuthentications), "services", len(v.Services))
	return nil
}

// maxNackMessage bounds the error text sent back to the control plane.
const maxNackMessage = 4096

func nack(t, nonce, msg string) *discovery.DeltaDiscoveryRequest {
	if len(msg) > maxNackMessage {
		msg = msg[:maxNackMessage]
	}
	return &discovery.DeltaDiscoveryRequest{
		TypeUrl:       t,
		ResponseNonce: nonce,
		ErrorDetail:   &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: msg},
	}
}
