package echo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// shutdownGrace is how long Run lets in-flight requests finish once its
// context is done.
const shutdownGrace = 5 * time.Second

// Server is the echo application. It is an http.Handler, so tests can
// drive it with httptest, and Run serves it on Config.Listen.
type Server struct {
	name        string
	listen      string
	client      *http.Client
	ownClient   bool // client was built here, so Run closes its idle connections
	callTimeout time.Duration
	log         *slog.Logger

	mu  sync.Mutex
	ln  net.Listener
	ran bool
}

// New validates cfg and returns a Server that is not yet listening.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{
		name:        cfg.Name,
		listen:      cfg.Listen,
		client:      cfg.Client,
		callTimeout: cfg.CallTimeout,
		log:         cfg.Logger,
	}
	if s.name == "" {
		s.name = "echo"
	}
	if s.client == nil {
		s.client, s.ownClient = defaultClient(), true
	}
	if s.callTimeout == 0 {
		s.callTimeout = DefaultCallTimeout
	}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return s, nil
}

// Listen binds Config.Listen, so that Addr is known before Run serves.
// Calling it is optional: Run listens if it has not been done.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return errors.New("echo: already listening")
	}
	ln, err := net.Listen("tcp", s.listen)
	if err != nil {
		return fmt.Errorf("echo: listen on %s: %w", s.listen, err)
	}
	s.ln = ln
	return nil
}

// Addr returns the address the Server listens on, or nil before Listen
// (or Run) has bound it.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Run serves HTTP/1.1 and cleartext HTTP/2 (prior knowledge) until ctx is
// done, then lets in-flight requests finish for a few seconds and returns
// nil. It returns an error if it cannot listen or serving fails. Run may
// be called once.
func (s *Server) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.ran {
		s.mu.Unlock()
		return errors.New("echo: Run called twice")
	}
	s.ran = true
	s.mu.Unlock()

	if s.Addr() == nil {
		if err := s.Listen(); err != nil {
			return err
		}
	}
	if s.ownClient {
		defer s.client.CloseIdleConnections()
	}

	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{
		Handler:           s,
		Protocols:         &protocols,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}

	s.mu.Lock()
	ln := s.ln
	s.mu.Unlock()
	s.log.Info("echo: serving", "app", s.name, "addr", ln.Addr().String())

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	select {
	case err := <-served:
		return fmt.Errorf("echo: serve on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		srv.Close()
	}
	<-served
	s.log.Info("echo: stopped", "app", s.name)
	return nil
}
