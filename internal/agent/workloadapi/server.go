package workloadapi

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	pb "github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/zmesh/zmesh/internal/agent/localsock"
)

// Source is what the server needs of the agent: the current SVID and
// bundle, and a channel closed at their next change (agent.Agent.Updated).
type Source interface {
	x509svid.Source
	x509bundle.Source
	Updated() <-chan struct{}
}

// Config configures a Server.
type Config struct {
	// SocketPath is the unix socket to serve on ("unix://" prefix allowed).
	// Required.
	SocketPath string
	// Source supplies the identity. Required.
	Source Source
	// TrustDomain is the agent's trust domain, whose bundle
	// FetchX509Bundles serves. Required.
	TrustDomain spiffeid.TrustDomain
	// Policy says which local uids may call; the zero value admits only
	// the agent's own uid.
	Policy localsock.Policy
	// Logger receives one event per stream; default discards.
	Logger *slog.Logger
}

// Validate reports a configuration the Server cannot run with.
func (c Config) Validate() error {
	var errs []error
	if c.SocketPath == "" {
		errs = append(errs, errors.New("empty socket path"))
	}
	if c.Source == nil {
		errs = append(errs, errors.New("no source"))
	}
	if c.TrustDomain.IsZero() {
		errs = append(errs, errors.New("empty trust domain"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("workloadapi: invalid config: %w", err)
	}
	return nil
}

// Server is a SPIFFE Workload API server on a unix socket.
type Server struct {
	pb.UnimplementedSpiffeWorkloadAPIServer

	cfg Config
	log *slog.Logger
}

// New returns a Server for cfg; it does no I/O.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, log: log.With("component", "workloadapi")}, nil
}

// Run listens on the socket (see localsock.Listen) and serves until ctx is
// done, then ends every stream, removes the socket and returns nil. It
// returns an error if the socket cannot be created.
func (s *Server) Run(ctx context.Context) error {
	lis, err := localsock.Listen(s.cfg.SocketPath)
	if err != nil {
		return fmt.Errorf("workloadapi: %w", err)
	}
	return s.Serve(ctx, lis)
}

// Serve serves on lis until ctx is done; lis is closed on return. The
// listener must be a unix socket for the uid policy to admit anyone.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	gs := grpc.NewServer(
		grpc.Creds(localsock.Credentials()),
		grpc.ChainUnaryInterceptor(s.unaryGuard),
		grpc.ChainStreamInterceptor(s.streamGuard),
	)
	pb.RegisterSpiffeWorkloadAPIServer(gs, s)
	errc := make(chan error, 1)
	go func() { errc <- gs.Serve(lis) }()
	s.log.Info("workload API serving", "socket", lis.Addr().String())
	select {
	case <-ctx.Done():
		gs.Stop() // cancels the streams, which otherwise never end
		<-errc
		return nil
	case err := <-errc:
		return fmt.Errorf("workloadapi: serve: %w", err)
	}
}

// FetchX509SVID streams the agent's SVID with its key and bundle, once the
// agent holds one and again after every change.
func (s *Server) FetchX509SVID(_ *pb.X509SVIDRequest, stream grpc.ServerStreamingServer[pb.X509SVIDResponse]) error {
	var sentSVID *x509svid.SVID
	var sentBundle *x509bundle.Bundle
	for {
		changed := s.cfg.Source.Updated()
		svid, err := s.cfg.Source.GetX509SVID()
		if err == nil {
			bundle, err := s.cfg.Source.GetX509BundleForTrustDomain(svid.ID.TrustDomain())
			if err != nil {
				return status.Errorf(codes.Unavailable, "no trust bundle: %v", err)
			}
			if svid != sentSVID || bundle != sentBundle {
				resp, err := svidResponse(svid, bundle)
				if err != nil {
					return status.Error(codes.Internal, err.Error())
				}
				if err := stream.Send(resp); err != nil {
					return err
				}
				sentSVID, sentBundle = svid, bundle
			}
		}
		// No SVID yet: wait for the agent's first one rather than fail, as
		// the caller's identity is not in doubt, only its issuance.
		select {
		case <-changed:
		case <-stream.Context().Done():
			return nil
		}
	}
}

// FetchX509Bundles streams the trust domain's bundle, now and after every
// change.
func (s *Server) FetchX509Bundles(_ *pb.X509BundlesRequest, stream grpc.ServerStreamingServer[pb.X509BundlesResponse]) error {
	var sent *x509bundle.Bundle
	for {
		changed := s.cfg.Source.Updated()
		bundle, err := s.cfg.Source.GetX509BundleForTrustDomain(s.cfg.TrustDomain)
		if err != nil {
			return status.Errorf(codes.Unavailable, "no trust bundle: %v", err)
		}
		if bundle != sent {
			resp := &pb.X509BundlesResponse{Bundles: map[string][]byte{
				s.cfg.TrustDomain.IDString(): concatDER(bundle.X509Authorities()),
			}}
			if err := stream.Send(resp); err != nil {
				return err
			}
			sent = bundle
		}
		select {
		case <-changed:
		case <-stream.Context().Done():
			return nil
		}
	}
}

// FetchJWTSVID answers Unimplemented: the agent issues no JWT-SVIDs.
func (s *Server) FetchJWTSVID(context.Context, *pb.JWTSVIDRequest) (*pb.JWTSVIDResponse, error) {
	return nil, status.Error(codes.Unimplemented, "JWT-SVIDs are not issued by this agent")
}

// FetchJWTBundles sends an empty set of JWT bundles and holds the stream
// open, so clients watching every bundle kind keep working.
func (s *Server) FetchJWTBundles(_ *pb.JWTBundlesRequest, stream grpc.ServerStreamingServer[pb.JWTBundlesResponse]) error {
	if err := stream.Send(&pb.JWTBundlesResponse{Bundles: map[string][]byte{}}); err != nil {
		return err
	}
	<-stream.Context().Done()
	return nil
}

// ValidateJWTSVID answers Unimplemented: the agent issues no JWT-SVIDs.
func (s *Server) ValidateJWTSVID(context.Context, *pb.ValidateJWTSVIDRequest) (*pb.ValidateJWTSVIDResponse, error) {
	return nil, status.Error(codes.Unimplemented, "JWT-SVIDs are not issued by this agent")
}

// guard enforces what every call must carry: SPIRE's security header
// "workload.spiffe.io: true" (which a browser or SSRF-driven request cannot
// set) and an admitted caller uid.
func (s *Server) guard(ctx context.Context, method string) error {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("workload.spiffe.io"); len(v) != 1 || v[0] != "true" {
		s.log.Warn("call refused", "method", method, "reason", "missing security header")
		return status.Error(codes.InvalidArgument, "security header missing from request")
	}
	if err := s.cfg.Policy.Authorize(ctx); err != nil {
		s.log.Warn("call refused", "method", method, "reason", status.Convert(err).Message())
		return err
	}
	return nil
}

func (s *Server) unaryGuard(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := s.guard(ctx, info.FullMethod); err != nil {
		return nil, err
	}
	return h(ctx, req)
}

func (s *Server) streamGuard(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if err := s.guard(ss.Context(), info.FullMethod); err != nil {
		return err
	}
	return h(srv, ss)
}

func svidResponse(svid *x509svid.SVID, bundle *x509bundle.Bundle) (*pb.X509SVIDResponse, error) {
	key, err := x509.MarshalPKCS8PrivateKey(svid.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("encode SVID key: %w", err)
	}
	return &pb.X509SVIDResponse{Svids: []*pb.X509SVID{{
		SpiffeId:    svid.ID.String(),
		X509Svid:    concatDER(svid.Certificates),
		X509SvidKey: key,
		Bundle:      concatDER(bundle.X509Authorities()),
	}}}, nil
}

func concatDER(certs []*x509.Certificate) []byte {
	n := 0
	for _, c := range certs {
		n += len(c.Raw)
	}
	out := make([]byte, 0, n)
	for _, c := range certs {
		out = append(out, c.Raw...)
	}
	return out
}

var _ pb.SpiffeWorkloadAPIServer = (*Server)(nil)
