package csr

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	pb "istio.io/api/security/v1alpha1"

	"github.com/zmesh/zmesh/internal/ca"
)

// Config configures a Service.
type Config struct {
	// Authority signs the certificates. Required.
	Authority *ca.Authority
	// Authenticators decide who the caller is, tried in order (see
	// ErrNoCredentials). Default: the caller's mesh client certificate, then
	// a bootstrap token. A Kubernetes TokenReview authenticator goes here.
	Authenticators []Authenticator
	// Logger receives one event per issuance or refusal; default discards.
	Logger *slog.Logger
	// Registerer receives the service's metrics; nil registers none (they
	// are still counted).
	Registerer prometheus.Registerer
}

// Service implements IstioCertificateService.CreateCertificate. It is safe for
// concurrent use.
type Service struct {
	pb.UnimplementedIstioCertificateServiceServer

	authority *ca.Authority
	auth      chain
	log       *slog.Logger
	metrics   *metrics
}

// NewService returns a Service. It fails if cfg has no Authority or the
// metrics cannot be registered (for example, registered twice).
func NewService(cfg Config) (*Service, error) {
	if cfg.Authority == nil {
		return nil, errors.New("csr: no authority")
	}
	auth := cfg.Authenticators
	if len(auth) == 0 {
		auth = []Authenticator{
			NewClientCertAuthenticator(cfg.Authority),
			&TokenAuthenticator{Verifier: cfg.Authority.TokenVerifier()},
		}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	return &Service{authority: cfg.Authority, auth: chain(auth), log: log.With("component", "ca"), metrics: m}, nil
}

// Register adds the service to s.
func (s *Service) Register(r grpc.ServiceRegistrar) {
	pb.RegisterIstioCertificateServiceServer(r, s)
}

// Refusal reasons, the values of the refusals metric's "reason" label.
const (
	reasonUnauthenticated = "unauthenticated"
	reasonInvalidCSR      = "invalid_csr"
	reasonInvalidTTL      = "invalid_ttl"
	reasonInternal        = "internal"
)

// CreateCertificate authenticates the caller, then signs the CSR's public key
// for the authenticated identity. Names in the CSR are ignored (as Istio's CA
// does): a CSR naming another identity still gets a certificate for the
// caller's own, so nothing the caller writes can widen what it gets.
func (s *Service) CreateCertificate(ctx context.Context, req *pb.IstioCertificateRequest) (*pb.IstioCertificateResponse, error) {
	log := s.log
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		log = log.With("peer", p.Addr.String())
	}
	id, err := s.auth.Authenticate(ctx)
	if err != nil {
		reason := err.Error()
		if errors.Is(err, ErrNoCredentials) {
			reason = "no credentials"
		}
		return nil, s.refuse(log, codes.Unauthenticated, reasonUnauthenticated, "authentication failed", reason)
	}
	log = log.With("identity", id.String())

	if len(req.GetCsr()) > ca.MaxCSRSize {
		return nil, s.refuse(log, codes.InvalidArgument, reasonInvalidCSR,
			fmt.Sprintf("CSR larger than %d bytes", ca.MaxCSRSize), "oversized CSR")
	}
	if req.GetValidityDuration() < 0 {
		return nil, s.refuse(log, codes.InvalidArgument, reasonInvalidTTL, "negative validity_duration", "negative validity_duration")
	}
	csr, err := ca.ParseCSR([]byte(req.GetCsr()))
	if err != nil {
		return nil, s.refuse(log, codes.InvalidArgument, reasonInvalidCSR, err.Error(), err.Error())
	}
	if ignored := otherNames(csr.URIs, id); len(ignored) > 0 {
		log.Info("CSR names ignored", "requested", ignored)
	}

	ttl := requestedTTL(req.GetValidityDuration())
	chain, err := s.authority.Sign(csr, id, ttl)
	if errors.Is(err, ca.ErrInvalidCSR) {
		return nil, s.refuse(log, codes.InvalidArgument, reasonInvalidCSR, err.Error(), err.Error())
	}
	if err != nil {
		log.Error("certificate signing failed", "err", err)
		s.metrics.refused.WithLabelValues(reasonInternal).Inc()
		return nil, status.Error(codes.Internal, "signing failed")
	}
	resp := &pb.IstioCertificateResponse{CertChain: make([]string, len(chain))}
	for i := range chain {
		resp.CertChain[i] = string(ca.EncodeCertificates(chain[i : i+1]))
	}
	leaf := chain[0]
	log.Info("certificate issued", "serial", leaf.SerialNumber.Text(16),
		"not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
	s.metrics.issued.Inc()
	return resp, nil
}

// refuse logs and counts a refusal and returns the gRPC status for it. msg
// goes to the caller, detail to the log; neither ever holds a credential.
func (s *Service) refuse(log *slog.Logger, code codes.Code, reason, msg, detail string) error {
	log.Warn("certificate refused", "reason", reason, "detail", detail)
	s.metrics.refused.WithLabelValues(reason).Inc()
	return status.Error(code, "csr: "+msg)
}

// requestedTTL converts validity_duration seconds to a lifetime without
// overflowing; the Authority caps it at its MaxTTL.
func requestedTTL(seconds int64) time.Duration {
	if seconds > math.MaxInt64/int64(time.Second) {
		return math.MaxInt64
	}
	return time.Duration(seconds) * time.Second
}

func otherNames(uris []*url.URL, id spiffeid.ID) []string {
	var out []string
	for _, u := range uris {
		if u.String() != id.String() {
			out = append(out, u.String())
		}
	}
	return out
}

var _ pb.IstioCertificateServiceServer = (*Service)(nil)
