package csr

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	pb "istio.io/api/security/v1alpha1"

	"github.com/zmesh/zmesh/internal/ca"
	"github.com/zmesh/zmesh/internal/pemcert"
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
	// RateLimit bounds issuances per identity; the zero value is
	// DefaultRateLimit.
	RateLimit RateLimit
	// Clock is the rate limiter's time; default the Authority's clock.
	Clock func() time.Time
}

// Service implements IstioCertificateService.CreateCertificate. It is safe for
// concurrent use.
type Service struct {
	pb.UnimplementedIstioCertificateServiceServer

	authority *ca.Authority
	auth      chain
	log       *slog.Logger
	metrics   *metrics
	limit     *limiter
	tail      atomic.Pointer[encodedTail] // see chainTail
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
	m, err := newMetrics(cfg.Registerer, cfg.Authority)
	if err != nil {
		return nil, err
	}
	clock := cfg.Clock
	if clock == nil {
		clock = cfg.Authority.Clock()
	}
	return &Service{
		authority: cfg.Authority,
		auth:      chain(auth),
		log:       log.With("component", "ca"),
		metrics:   m,
		limit:     newLimiter(cfg.RateLimit, clock),
	}, nil
}

// Register adds the service to s.
func (s *Service) Register(r grpc.ServiceRegistrar) {
	pb.RegisterIstioCertificateServiceServer(r, s)
}

// Refusal reasons, the values of the refusals metric's "reason" label.
const (
	reasonUnauthenticated = "unauthenticated"
	reasonNoCredentials   = "no_credentials"
	reasonTokenExpired    = "token_expired"
	reasonTokenInvalid    = "token_invalid"
	reasonRateLimited     = "rate_limited"
	reasonInvalidCSR      = "invalid_csr"
	reasonInvalidTTL      = "invalid_ttl"
	reasonCAExpired       = "ca_expired"
	reasonCANotYetValid   = "ca_not_yet_valid"
	reasonInternal        = "internal"
)

// CreateCertificate authenticates the caller, then signs the CSR's public key
// for the authenticated identity. Names in the CSR are ignored (as Istio's CA
// does): a CSR naming another identity still gets a certificate for the
// caller's own, so nothing the caller writes can widen what it gets.
func (s *Service) CreateCertificate(ctx context.Context, req *pb.IstioCertificateRequest) (*pb.IstioCertificateResponse, error) {
	// The logger gets the peer and identity only when an event is
	// logged: cloning a logger per request was a measurable part of an
	// issuance.
	log := requestLogger{s.log, ctx, ""}
	id, err := s.auth.Authenticate(ctx)
	if errors.Is(err, ErrUnavailable) {
		return nil, s.refuse(log, codes.Unavailable, reasonAuthUnavailable, "cannot authenticate now; retry later", err.Error())
	}
	if err != nil {
		return nil, s.refuse(log, codes.Unauthenticated, authReason(err), "authentication failed", err.Error())
	}
	log.identity = id.String()
	if ok, retry := s.limit.allow(log.identity); !ok {
		return nil, s.refuse(log, codes.ResourceExhausted, reasonRateLimited,
			fmt.Sprintf("too many certificate requests for this identity; retry in %s", retry.Round(time.Millisecond)),
			"rate limited")
	}

	if len(req.GetCsr()) > ca.MaxCSRSize {
		return nil, s.refuse(log, codes.InvalidArgument, reasonInvalidCSR,
			fmt.Sprintf("CSR larger than %d bytes", ca.MaxCSRSize), "oversized CSR")
	}
	if req.GetValidityDuration() < 0 {
		return nil, s.refuse(log, codes.InvalidArgument, reasonInvalidTTL, "negative validity_duration", "negative validity_duration")
	}
	csr, err := ca.DecodeCSR([]byte(req.GetCsr()))
	if err != nil {
		return nil, s.refuse(log, codes.InvalidArgument, reasonInvalidCSR, err.Error(), err.Error())
	}

	ttl := requestedTTL(req.GetValidityDuration())
	start := time.Now()
	issued, err := s.authority.Issue(csr, id, ttl)
	signing := time.Since(start)
	switch {
	case errors.Is(err, ca.ErrInvalidCSR):
		return nil, s.refuse(log, codes.InvalidArgument, reasonInvalidCSR, err.Error(), err.Error())
	case errors.Is(err, ca.ErrCAExpired):
		// The operator must renew the CA: FailedPrecondition, not
		// Unavailable, which invites clients to retry at once.
		return nil, s.refuse(log, codes.FailedPrecondition, reasonCAExpired, "the CA cannot issue: its certificate has expired or is about to", err.Error())
	case errors.Is(err, ca.ErrCANotYetValid):
		return nil, s.refuse(log, codes.FailedPrecondition, reasonCANotYetValid, "the CA cannot issue: its certificate is not valid yet", err.Error())
	}
	if err != nil {
		log.log(slog.LevelError, "certificate signing failed", "err", err)
		s.metrics.refused.WithLabelValues(reasonInternal).Inc()
		return nil, status.Error(codes.Internal, "signing failed")
	}
	if ignored := otherNames(csr.URIs, id); len(ignored) > 0 {
		// A CSR may carry thousands of names: log a few and the count.
		log.log(slog.LevelInfo, "CSR names ignored", "requested", ignored[:min(len(ignored), maxLoggedNames)], "count", len(ignored))
	}
	resp := s.response(issued)
	leaf := issued.Chain[0]
	if issued.Truncated {
		log.log(slog.LevelWarn, "certificate cut short by the CA's expiry", "not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	// One line per issuance stays at Info: it is the CA's audit trail.
	log.log(slog.LevelInfo, "certificate issued", "serial", leaf.SerialNumber.Text(16),
		"not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
	s.metrics.issued.Inc()
	s.metrics.signing.Observe(signing.Seconds())
	return resp, nil
}

// response lays out an issuance as Istio's CA does: cert_chain holds the
// leaf, then each intermediate, one PEM certificate per element, and last
// the whole trust bundle as one element of concatenated PEM roots. Istio
// agents read that last element as their root certificates; zmesh agents
// also take it as their new trust bundle, which is how a root rotation
// reaches every proxy (see package ca). With a single root this is exactly
// the familiar [leaf, ..., root] chain.
func (s *Service) response(is *ca.Issued) *pb.IstioCertificateResponse {
	tail := s.chainTail(is)
	resp := &pb.IstioCertificateResponse{CertChain: make([]string, 0, 1+len(tail))}
	resp.CertChain = append(resp.CertChain, certificatePEM(is.Chain[0].Raw))
	resp.CertChain = append(resp.CertChain, tail...)
	return resp
}

// chainTail returns the PEM elements after the leaf: each intermediate,
// then the bundle. They are the same for every issuance of one signing
// state, so they are encoded once per state.
func (s *Service) chainTail(is *ca.Issued) []string {
	inter := is.Intermediates()
	if c := s.tail.Load(); c != nil && c.matches(inter, is.Bundle) {
		return c.pem
	}
	c := &encodedTail{inter: slices.Clone(inter), bundle: slices.Clone(is.Bundle)}
	for i := range inter {
		c.pem = append(c.pem, string(pemcert.Encode(inter[i:i+1]...)))
	}
	c.pem = append(c.pem, string(pemcert.Encode(is.Bundle...)))
	s.tail.Store(c)
	return c.pem
}

// encodedTail is chainTail's cache: the certificates it encoded (compared
// by identity: a signing state's certificates are never modified) and
// their PEM elements.
type encodedTail struct {
	inter, bundle []*x509.Certificate
	pem           []string
}

func (c *encodedTail) matches(inter, bundle []*x509.Certificate) bool {
	return slices.Equal(c.inter, inter) && slices.Equal(c.bundle, bundle)
}

// requestLogger logs the events of one request with its peer and, once
// authenticated, its identity.
type requestLogger struct {
	base     *slog.Logger
	ctx      context.Context
	identity string
}

func (l requestLogger) log(level slog.Level, msg string, args ...any) {
	if !l.base.Enabled(l.ctx, level) {
		return
	}
	// Who and from where come first, as they did when they were the
	// logger's own attributes: audit tooling reads the line that way.
	head := make([]any, 0, 4+len(args))
	if p, ok := peer.FromContext(l.ctx); ok && p.Addr != nil {
		head = append(head, "peer", p.Addr.String())
	}
	if l.identity != "" {
		head = append(head, "identity", l.identity)
	}
	l.base.Log(l.ctx, level, msg, append(head, args...)...)
}

// refuse logs and counts a refusal and returns the gRPC status for it. msg
// goes to the caller, detail to the log; neither ever holds a credential.
func (s *Service) refuse(log requestLogger, code codes.Code, reason, msg, detail string) error {
	log.log(slog.LevelWarn, "certificate refused", "reason", reason, "detail", detail)
	s.metrics.refused.WithLabelValues(reason).Inc()
	return status.Error(code, "csr: "+msg)
}

// authReason is the refusal reason of an authentication error: precise for
// bootstrap tokens, whose expiry an operator must act on.
func authReason(err error) string {
	switch {
	case errors.Is(err, ErrNoCredentials):
		return reasonNoCredentials
	case errors.Is(err, ca.ErrTokenExpired):
		return reasonTokenExpired
	case errors.Is(err, ca.ErrTokenSignature), errors.Is(err, ca.ErrTokenMalformed):
		return reasonTokenInvalid
	default:
		return reasonUnauthenticated
	}
}

// requestedTTL converts validity_duration seconds to a lifetime without
// overflowing; the Authority caps it at its MaxTTL.
func requestedTTL(seconds int64) time.Duration {
	if seconds > math.MaxInt64/int64(time.Second) {
		return math.MaxInt64
	}
	return time.Duration(seconds) * time.Second
}

// maxLoggedNames bounds the ignored CSR names one log line carries.
const maxLoggedNames = 4

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
