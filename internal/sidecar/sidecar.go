// Package sidecar wires the parts of `zmesh proxy` into one process: the
// agent (identity: key, CSR, rotation), the xDS client (config from the
// control plane) and the data plane. The agent gets a certificate first;
// the xDS stream then authenticates with it, and every config push is
// handed to the data plane, which compiles it or refuses it (NACK).
package sidecar

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/zmesh/zmesh/internal/agent"
	"github.com/zmesh/zmesh/internal/agent/sds"
	"github.com/zmesh/zmesh/internal/agent/workloadapi"
	"github.com/zmesh/zmesh/internal/proxy"
	"github.com/zmesh/zmesh/internal/registry"
	"github.com/zmesh/zmesh/internal/xds"
	"github.com/zmesh/zmesh/internal/xds/client"
)

// Config configures one sidecar.
type Config struct {
	ControlPlane string // host:port of the control plane's gRPC/TLS port
	RootCertFile string // the mesh trust bundle (the control plane's root-cert.pem)
	TokenFile    string // bootstrap token, read when a certificate is needed and none is held
	Workload     registry.Workload
	TrustDomain  string
	DNSDomain    string
	CertTTL      time.Duration // requested certificate lifetime; 0 = the CA's default

	InboundAddr, OutboundAddr, AdminAddr, AppAddr string
	// AdvertiseAddr is where other proxies reach this one's inbound
	// listener; default InboundAddr.
	AdvertiseAddr string

	// WorkloadAPISocket, when set, serves the SPIFFE Workload API there so
	// SPIFFE-aware apps fetch their SVID from this agent.
	WorkloadAPISocket string
	// SDSSocket, when set, serves Envoy's SDS there ("default", "ROOTCA",
	// and SDSFiles under their names).
	SDSSocket string
	SDSFiles  []sds.File
	// KeyType is the workload key's type; default ECDSA P-256.
	KeyType agent.KeyType
	// AccessLog turns on one log line per request.
	AccessLog bool

	Logger *slog.Logger
}

// Validate checks c and fills in defaults.
func (c *Config) Validate() error {
	if c.ControlPlane == "" || c.RootCertFile == "" {
		return errors.New("sidecar: control plane address and root certificate are required")
	}
	if c.Workload.Name == "" || c.Workload.Namespace == "" || c.Workload.ServiceAccount == "" {
		return errors.New("sidecar: workload name, namespace and service account are required")
	}
	if c.AppAddr == "" {
		return errors.New("sidecar: app address is required")
	}
	if c.TrustDomain == "" {
		c.TrustDomain = "cluster.local"
	}
	if c.DNSDomain == "" {
		c.DNSDomain = "cluster.local"
	}
	if c.AdvertiseAddr == "" {
		c.AdvertiseAddr = c.InboundAddr
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Run runs the sidecar until ctx is done.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	log := cfg.Logger
	rootPEM, err := os.ReadFile(cfg.RootCertFile)
	if err != nil {
		return fmt.Errorf("sidecar: trust bundle: %w", err)
	}
	td, err := spiffeid.TrustDomainFromString(cfg.TrustDomain)
	if err != nil {
		return fmt.Errorf("sidecar: trust domain: %w", err)
	}
	bundle, err := x509bundle.Parse(td, rootPEM)
	if err != nil {
		return fmt.Errorf("sidecar: trust bundle %s: %w", cfg.RootCertFile, err)
	}
	rootCerts := bundle.X509Authorities()

	ag, err := agent.New(agent.Config{
		CAAddress:      cfg.ControlPlane,
		CARoots:        rootCerts,
		Token:          readToken(cfg.TokenFile),
		TrustDomain:    td,
		Namespace:      cfg.Workload.Namespace,
		ServiceAccount: cfg.Workload.ServiceAccount,
		RequestedTTL:   cfg.CertTTL,
		KeyType:        cfg.KeyType,
		Logger:         log,
	})
	if err != nil {
		return err
	}
	px, err := proxy.New(proxy.Config{
		Workload:     cfg.Workload,
		TrustDomain:  cfg.TrustDomain,
		DNSDomain:    cfg.DNSDomain,
		InboundAddr:  cfg.InboundAddr,
		OutboundAddr: cfg.OutboundAddr,
		AdminAddr:    cfg.AdminAddr,
		AppAddr:      cfg.AppAddr,
		Certs:        ag,
		CertStatus:   func() any { return ag.Status() },
		Logger:       log,
		AccessLogAll: cfg.AccessLog,
	})
	if err != nil {
		return err
	}
	w := cfg.Workload
	w.Address = cfg.AdvertiseAddr
	if host, port, err := net.SplitHostPort(w.Address); err == nil && port == "0" {
		// Bound to any free port: advertise the one we got.
		_, bound, _ := net.SplitHostPort(px.InboundAddr().String())
		w.Address = net.JoinHostPort(host, bound)
	}
	w.HasProxy = true
	xc, err := client.New(client.Config{
		Address: cfg.ControlPlane,
		// Verified against the agent's current bundle, so the stream still
		// reconnects after a root rotation retired the root we started with.
		TLS:       ag.ControlPlaneTLS(),
		Proxy:     xds.Proxy{ID: w.Key(), Workload: w},
		DNSDomain: cfg.DNSDomain,
		Apply:     px.Apply,
		Logger:    log,
	})
	if err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 5)
	if cfg.WorkloadAPISocket != "" {
		wl, err := workloadapi.New(workloadapi.Config{SocketPath: cfg.WorkloadAPISocket, Source: ag, TrustDomain: td, Logger: log})
		if err != nil {
			return err
		}
		wg.Go(func() {
			if err := wl.Run(ctx); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("workload API: %w", err)
			}
		})
	}
	if cfg.SDSSocket != "" {
		srcs := []sds.Source{sds.AgentSecrets(ag, td)}
		if len(cfg.SDSFiles) > 0 {
			fs, err := sds.NewFileSource(cfg.SDSFiles, 0, log)
			if err != nil {
				return err
			}
			srcs = append(srcs, fs)
		}
		srv, err := sds.New(sds.Config{SocketPath: cfg.SDSSocket, Sources: srcs, Logger: log})
		if err != nil {
			return err
		}
		wg.Go(func() {
			if err := srv.Run(ctx); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("sds: %w", err)
			}
		})
	}
	wg.Go(func() {
		if err := ag.Run(ctx); err != nil && ctx.Err() == nil {
			errc <- fmt.Errorf("agent: %w", err)
		}
	})
	wg.Go(func() {
		if err := px.Run(ctx); err != nil && ctx.Err() == nil {
			errc <- fmt.Errorf("proxy: %w", err)
		}
	})
	wg.Go(func() {
		// The xDS stream authenticates with the mesh certificate, so it
		// starts once the agent holds one.
		select {
		case <-ctx.Done():
			return
		case <-ag.Ready():
		}
		if err := xc.Run(ctx); err != nil && ctx.Err() == nil {
			errc <- fmt.Errorf("xds client: %w", err)
		}
	})
	log.Info("proxy starting", "workload", w.Key(), "inbound", cfg.InboundAddr, "outbound", cfg.OutboundAddr,
		"admin", cfg.AdminAddr, "app", cfg.AppAddr, "controlplane", cfg.ControlPlane)
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	cancel()
	wg.Wait()
	return runErr
}

// readToken returns a function that reads the bootstrap token file each
// time it is needed, so an operator can replace an expired token without
// restarting the proxy.
func readToken(path string) func() (string, error) {
	return func() (string, error) {
		if path == "" {
			return "", errors.New("no bootstrap token file configured")
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return "", err
		}
		return strings.TrimSpace(string(b)), nil
	}
}
