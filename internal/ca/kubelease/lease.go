// Package kubelease runs a piece of work on one control-plane replica at a
// time, the holder of a coordination.k8s.io Lease (client-go's
// leaderelection). The CA uses it for what must not be done by every
// replica at once: publishing the trust bundle to every namespace.
// Signing needs no lease: every replica signs.
package kubelease

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// Config configures an Elected run.
type Config struct {
	// Client reaches the cluster. Required; the account needs get, create
	// and update on leases in Namespace.
	Client kubernetes.Interface
	// Namespace and Name name the Lease. Required.
	Namespace, Name string
	// Identity tells the holders apart; default hostname plus a random
	// suffix, so two replicas on one host (tests, zmesh up) differ.
	Identity string
	// LeaseDuration, RenewDeadline and RetryPeriod are leaderelection's;
	// defaults 15s, 10s, 2s.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// Logger receives leadership changes; default discards.
	Logger *slog.Logger
}

func (c *Config) defaults() error {
	if c.Client == nil || c.Namespace == "" || c.Name == "" {
		return errors.New("kubelease: client, namespace and name are required")
	}
	if c.Identity == "" {
		host, _ := os.Hostname()
		var b [4]byte
		_, _ = rand.Read(b[:])
		c.Identity = host + "_" + hex.EncodeToString(b[:])
	}
	if c.LeaseDuration <= 0 {
		c.LeaseDuration = 15 * time.Second
	}
	if c.RenewDeadline <= 0 {
		c.RenewDeadline = 10 * time.Second
	}
	if c.RetryPeriod <= 0 {
		c.RetryPeriod = 2 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Run campaigns for the Lease until ctx is done, and runs work while it
// holds it. work's context is cancelled when the Lease is lost; Run waits
// for work to return before campaigning again, so two terms never overlap
// in this process. On ctx's end the Lease is released, so another replica
// takes over at once.
func Run(ctx context.Context, cfg Config, work func(context.Context)) error {
	if err := cfg.defaults(); err != nil {
		return err
	}
	log := cfg.Logger.With("lease", cfg.Namespace+"/"+cfg.Name, "identity", cfg.Identity)
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, cfg.Namespace, cfg.Name,
		cfg.Client.CoreV1(), cfg.Client.CoordinationV1(), resourcelock.ResourceLockConfig{Identity: cfg.Identity})
	if err != nil {
		return fmt.Errorf("kubelease: %w", err)
	}
	for ctx.Err() == nil {
		t := &term{}
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock:            lock,
			LeaseDuration:   cfg.LeaseDuration,
			RenewDeadline:   cfg.RenewDeadline,
			RetryPeriod:     cfg.RetryPeriod,
			ReleaseOnCancel: true,
			Name:            cfg.Name,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(lctx context.Context) {
					if !t.begin() {
						return
					}
					defer t.end()
					log.Info("lease acquired")
					work(lctx)
				},
				OnStoppedLeading: func() {},
			},
		})
		if err != nil {
			return fmt.Errorf("kubelease: %w", err)
		}
		le.Run(ctx)
		t.wait()
		if ctx.Err() == nil {
			log.Warn("lease lost; campaigning again")
		}
	}
	return nil
}

// term tracks the work goroutine that leaderelection starts on its own, so
// that Run owns it: either the goroutine registers before Run stops
// waiting, or it finds the term over and does nothing.
type term struct {
	mu      sync.Mutex
	over    bool
	running chan struct{}
}

func (t *term) begin() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.over {
		return false
	}
	t.running = make(chan struct{})
	return true
}

func (t *term) end() { close(t.running) }

func (t *term) wait() {
	t.mu.Lock()
	t.over = true
	r := t.running
	t.mu.Unlock()
	if r != nil {
		<-r
	}
}
