package sds

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/zmesh/zmesh/internal/agent/localsock"
)

// Config configures a Server.
type Config struct {
	// SocketPath is the unix socket to serve on ("unix://" prefix allowed).
	// Required for Run.
	SocketPath string
	// Sources supply the secrets; for a name served by several, the first
	// wins. Sources with a Run(ctx) error method (FileSource) are run by
	// the Server.
	Sources []Source
	// Policy says which local uids may call; the zero value admits only
	// the agent's own uid.
	Policy localsock.Policy
	// Logger receives stream events and NACKs; default discards.
	Logger *slog.Logger
}

// Server serves Envoy's SDS from its Sources.
type Server struct {
	secretv3.UnimplementedSecretDiscoveryServiceServer

	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	changed chan struct{}

	nonce atomic.Uint64
	nacks atomic.Uint64
}

// New returns a Server for cfg; it does no I/O.
func New(cfg Config) (*Server, error) {
	if len(cfg.Sources) == 0 {
		return nil, errors.New("sds: no secret sources")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, log: log.With("component", "sds"), changed: make(chan struct{})}, nil
}

// Run listens on the socket (see localsock.Listen) and serves until ctx is
// done, then ends every stream, removes the socket and returns nil.
func (s *Server) Run(ctx context.Context) error {
	if s.cfg.SocketPath == "" {
		return errors.New("sds: empty socket path")
	}
	lis, err := localsock.Listen(s.cfg.SocketPath)
	if err != nil {
		return fmt.Errorf("sds: %w", err)
	}
	return s.Serve(ctx, lis)
}

// Serve serves on lis until ctx is done; lis is closed on return.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	errc := make(chan error, len(s.cfg.Sources)+1)
	for _, src := range s.cfg.Sources {
		if r, ok := src.(interface{ Run(context.Context) error }); ok {
			wg.Go(func() {
				if err := r.Run(ctx); err != nil {
					errc <- err
				}
			})
		}
		wg.Go(func() { s.forward(ctx, src) })
	}

	gs := grpc.NewServer(
		grpc.Creds(localsock.Credentials()),
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := s.cfg.Policy.Authorize(ctx); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if err := s.cfg.Policy.Authorize(ss.Context()); err != nil {
				return err
			}
			return h(srv, ss)
		}),
	)
	secretv3.RegisterSecretDiscoveryServiceServer(gs, s)
	wg.Go(func() {
		if err := gs.Serve(lis); err != nil {
			errc <- fmt.Errorf("sds: serve: %w", err)
		}
	})
	s.log.Info("SDS serving", "socket", lis.Addr().String())
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	cancel()
	gs.Stop()
	return err
}

// NACKs returns how many responses clients have rejected.
func (s *Server) NACKs() uint64 { return s.nacks.Load() }

// forward turns src's updates into the server's change signal.
func (s *Server) forward(ctx context.Context, src Source) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-src.Updated():
		}
		s.mu.Lock()
		close(s.changed)
		s.changed = make(chan struct{})
		s.mu.Unlock()
	}
}

func (s *Server) changes() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// secret returns the current secret named name from the first source that
// has it.
func (s *Server) secret(name string) *tlsv3.Secret {
	for _, src := range s.cfg.Sources {
		if sec := src.Secret(name); sec != nil {
			return sec
		}
	}
	return nil
}

// allNames lists every name the sources serve now, for wildcard requests.
func (s *Server) allNames() []string {
	var out []string
	for _, src := range s.cfg.Sources {
		for _, n := range src.Names() {
			if !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	slices.Sort(out)
	return out
}

func (s *Server) nextNonce() string { return strconv.FormatUint(s.nonce.Add(1), 10) }

func checkType(typeURL string) error {
	if typeURL != "" && typeURL != TypeURL {
		return status.Errorf(codes.InvalidArgument, "sds: unsupported type %q", typeURL)
	}
	return nil
}

// FetchSecrets answers one request with the secrets that exist now.
func (s *Server) FetchSecrets(_ context.Context, req *discoveryv3.DiscoveryRequest) (*discoveryv3.DiscoveryResponse, error) {
	if err := checkType(req.GetTypeUrl()); err != nil {
		return nil, err
	}
	names := req.GetResourceNames()
	if len(names) == 0 {
		names = s.allNames()
	}
	resp, _, err := s.sotwResponse(names)
	if err != nil {
		return nil, err
	}
	if len(resp.Resources) == 0 {
		return nil, status.Errorf(codes.NotFound, "sds: no secret named %v", names)
	}
	return resp, nil
}

// sotwResponse builds the state-of-the-world response for names: every
// secret that exists, versioned by the digest of their versions.
func (s *Server) sotwResponse(names []string) (*discoveryv3.DiscoveryResponse, string, error) {
	resp := &discoveryv3.DiscoveryResponse{TypeUrl: TypeURL}
	var versions []byte
	for _, n := range names {
		sec := s.secret(n)
		if sec == nil {
			continue
		}
		a, err := anypb.New(sec)
		if err != nil {
			return nil, "", status.Errorf(codes.Internal, "sds: encode %q: %v", n, err)
		}
		resp.Resources = append(resp.Resources, a)
		versions = append(versions, n+"="+version(sec)+";"...)
	}
	v := version(&tlsv3.Secret{Name: string(versions)})
	resp.VersionInfo = v
	return resp, v, nil
}

// recvLoop feeds a stream's requests into a channel until the stream ends.
func recvLoop[T any](ctx context.Context, recv func() (T, error), out chan<- T, errc chan<- error) {
	for {
		req, err := recv()
		if err != nil {
			errc <- err
			return
		}
		select {
		case out <- req:
		case <-ctx.Done():
			return
		}
	}
}

var _ secretv3.SecretDiscoveryServiceServer = (*Server)(nil)
