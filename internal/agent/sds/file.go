package sds

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/zmesh/zmesh/internal/boundedio"
)

// File names certificate files an operator mounts, served as secrets.
//
// With CertChain and PrivateKey, the secret Name is a TLS certificate; a
// RootCert then becomes the validation context Name+"-cacert" (Istio's
// convention for gateway credentials). With only RootCert, Name itself is
// the validation context.
type File struct {
	Name                            string
	CertChain, PrivateKey, RootCert string
}

func (f File) validate() error {
	switch {
	case f.Name == "":
		return errors.New("empty secret name")
	case (f.CertChain == "") != (f.PrivateKey == ""):
		return fmt.Errorf("secret %q: certificate chain and private key go together", f.Name)
	case f.CertChain == "" && f.RootCert == "":
		return fmt.Errorf("secret %q: no files", f.Name)
	}
	return nil
}

// DefaultPollInterval is how often a FileSource re-reads its files.
const DefaultPollInterval = 2 * time.Second

// maxFile bounds every file read; certificates and keys are a few KiB.
const maxFile = 1 << 20

// FileSource serves secrets read from files and re-reads them every poll
// interval, so a renewed gateway certificate (a replaced file, or a
// Kubernetes Secret volume's symlink swap) is pushed without a restart.
// Polling compares contents rather than watching inodes, which a symlink
// swap defeats. A file set that fails to parse, or a key that does not
// match its certificate (say, caught halfway through an update), is logged
// and the last good secret kept.
type FileSource struct {
	files []File
	poll  time.Duration
	log   *slog.Logger

	mu      sync.Mutex
	raw     map[string][3][]byte // file contents last read, by File.Name
	secrets map[string]*tlsv3.Secret
	updated chan struct{}
}

// NewFileSource returns a source for files, read once now so that a
// misconfiguration fails at start. poll 0 means DefaultPollInterval.
func NewFileSource(files []File, poll time.Duration, log *slog.Logger) (*FileSource, error) {
	names := map[string]bool{}
	for _, f := range files {
		if err := f.validate(); err != nil {
			return nil, fmt.Errorf("sds: %w", err)
		}
		for _, n := range f.names() {
			if names[n] {
				return nil, fmt.Errorf("sds: secret %q configured twice", n)
			}
			names[n] = true
		}
	}
	if poll <= 0 {
		poll = DefaultPollInterval
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &FileSource{
		files:   slices.Clone(files),
		poll:    poll,
		log:     log.With("component", "sds"),
		raw:     map[string][3][]byte{},
		secrets: map[string]*tlsv3.Secret{},
		updated: make(chan struct{}),
	}
	var errs []error
	for _, f := range s.files {
		if err := s.load(f); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

func (f File) names() []string {
	switch {
	case f.CertChain == "":
		return []string{f.Name}
	case f.RootCert != "":
		return []string{f.Name, f.Name + "-cacert"}
	default:
		return []string{f.Name}
	}
}

// Run re-reads the files every poll interval until ctx is done.
func (s *FileSource) Run(ctx context.Context) error {
	t := time.NewTicker(s.poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		for _, f := range s.files {
			if err := s.load(f); err != nil {
				s.log.Warn("keeping last good secret", "secret", f.Name, "err", err)
			}
		}
	}
}

// load reads f's files and, if their contents changed and are valid,
// replaces its secrets and signals the change.
func (s *FileSource) load(f File) error {
	var raw [3][]byte
	for i, path := range []string{f.CertChain, f.PrivateKey, f.RootCert} {
		if path == "" {
			continue
		}
		b, err := boundedio.ReadFile(path, maxFile)
		if err != nil {
			return fmt.Errorf("sds: secret %q: %w", f.Name, err)
		}
		raw[i] = b
	}
	s.mu.Lock()
	old, seen := s.raw[f.Name]
	s.mu.Unlock()
	if seen && bytes.Equal(old[0], raw[0]) && bytes.Equal(old[1], raw[1]) && bytes.Equal(old[2], raw[2]) {
		return nil
	}
	secrets, err := f.parse(raw)
	if err != nil {
		return fmt.Errorf("sds: secret %q: %w", f.Name, err)
	}
	s.mu.Lock()
	s.raw[f.Name] = raw
	for _, sec := range secrets {
		s.secrets[sec.Name] = sec
	}
	close(s.updated)
	s.updated = make(chan struct{})
	s.mu.Unlock()
	if seen {
		s.log.Info("secret files changed", "secret", f.Name)
	}
	return nil
}

func (f File) parse(raw [3][]byte) ([]*tlsv3.Secret, error) {
	var out []*tlsv3.Secret
	if f.CertChain != "" {
		if _, err := tls.X509KeyPair(raw[0], raw[1]); err != nil {
			// X509KeyPair's errors name no key material.
			return nil, fmt.Errorf("certificate and key: %w", err)
		}
		out = append(out, TLSCertificate(f.Name, raw[0], raw[1]))
	}
	if f.RootCert != "" {
		if !x509.NewCertPool().AppendCertsFromPEM(raw[2]) {
			return nil, fmt.Errorf("%s: no PEM certificate", f.RootCert)
		}
		name := f.Name
		if f.CertChain != "" {
			name += "-cacert"
		}
		out = append(out, ValidationContext(name, raw[2]))
	}
	return out, nil
}

// Names lists the configured secrets that loaded.
func (s *FileSource) Names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for n := range s.secrets {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Secret returns the last good secret named name.
func (s *FileSource) Secret(name string) *tlsv3.Secret {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.secrets[name]
}

// Updated returns a channel closed when a file's content next changes.
func (s *FileSource) Updated() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.updated
}

var _ Source = (*FileSource)(nil)
