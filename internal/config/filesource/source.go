// Package filesource serves Istio resources from a directory of YAML
// files. It watches the directory and publishes a new config.Snapshot when
// the files' content changes, but only if the whole directory is valid: a
// bad edit is logged and rejected, and the last good snapshot stays in
// force, as a proxy keeps its last good config when a push is NACKed.
package filesource

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/zmesh/zmesh/internal/config"
)

// Defaults for Config's zero fields.
const (
	DefaultDebounce = 100 * time.Millisecond
	DefaultRescan   = 2 * time.Second
)

// Config configures a Source.
type Config struct {
	// Dir is the directory to watch. Required.
	Dir string
	// Logger receives one line per accepted or rejected change. Nil
	// discards logs.
	Logger *slog.Logger
	// Debounce is how long the directory must be quiet after a change
	// before it is re-read, so that an editor's burst of writes is read
	// once. Zero means DefaultDebounce. Changes are read at the latest ten
	// debounce periods after the first, even if writes go on.
	Debounce time.Duration
	// Rescan is the period of a full re-read that catches what file events
	// miss (a directory replaced, a watch lost). Zero means DefaultRescan.
	Rescan time.Duration
}

// Source publishes the snapshots of one directory. Create it with New, then
// call Run. Current and Subscribe are safe for concurrent use.
type Source struct {
	cfg Config
	log *slog.Logger

	// Owned by Run's goroutine (and New, before Run).
	lastRead [sha256.Size]byte // fingerprint of the files last loaded

	mu      sync.Mutex
	current *config.Snapshot
	lastErr error
	subs    map[*subscriber]struct{}
}

type subscriber struct {
	ch chan *config.Snapshot
}

// New loads cfg.Dir once and returns a Source serving that snapshot. The
// first load must succeed: a control plane that starts on a broken
// directory would otherwise serve nothing, and the error (naming the file)
// is better shown at start.
func New(cfg Config) (*Source, error) {
	if cfg.Dir == "" {
		return nil, errors.New("filesource: Dir is required")
	}
	if cfg.Debounce <= 0 {
		cfg.Debounce = DefaultDebounce
	}
	if cfg.Rescan <= 0 {
		cfg.Rescan = DefaultRescan
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	files, err := Read(cfg.Dir)
	if err != nil {
		return nil, err
	}
	snap, warnings, err := config.Load(files)
	if err != nil {
		return nil, fmt.Errorf("filesource: load %s: %w", cfg.Dir, err)
	}
	s := &Source{cfg: cfg, log: log.With("dir", cfg.Dir), current: snap, subs: map[*subscriber]struct{}{}, lastRead: fingerprint(files)}
	s.logWarnings(warnings)
	s.log.Info("config loaded", "version", snap.Version, "resources", len(snap.All()))
	return s, nil
}

// Current returns the snapshot in force: the last one that loaded without
// error. It is never nil.
func (s *Source) Current() *config.Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.current
}

// LastError returns why the directory's latest content was rejected, or
// nil if the snapshot in force reflects it.
func (s *Source) LastError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastErr
}

// Subscribe returns a channel that receives the current snapshot at once
// and then every new one. The channel holds only the latest snapshot: a
// slow reader skips intermediate versions but always ends up with the
// newest, and never blocks the Source. cancel stops delivery and closes the
// channel; it may be called more than once.
func (s *Source) Subscribe() (<-chan *config.Snapshot, func()) {
	sub := &subscriber{ch: make(chan *config.Snapshot, 1)}
	s.mu.Lock()
	s.subs[sub] = struct{}{}
	sub.ch <- s.current
	s.mu.Unlock()
	var once sync.Once
	return sub.ch, func() {
		once.Do(func() {
			s.mu.Lock()
			delete(s.subs, sub)
			close(sub.ch)
			s.mu.Unlock()
		})
	}
}

// Run watches the directory until ctx is done, then returns nil. It
// returns an error only if the watch cannot be set up. Run must be called
// at most once.
func (s *Source) Run(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("filesource: watch %s: %w", s.cfg.Dir, err)
	}
	defer w.Close()
	watching := w.Add(s.cfg.Dir) == nil
	if !watching {
		s.log.Warn("cannot watch directory; relying on periodic rescans", "every", s.cfg.Rescan)
	}
	// The directory may have changed between New and now.
	s.reload(ctx)

	rescan := time.NewTicker(s.cfg.Rescan)
	defer rescan.Stop()
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	defer debounce.Stop()
	var pendingSince time.Time // zero: no change pending

	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if ev.Name == s.cfg.Dir && ev.Has(fsnotify.Remove|fsnotify.Rename) {
				watching = false // the watch went with the directory
			}
			// Any event counts, even on files Read skips: a ConfigMap
			// volume updates by swapping a hidden "..data" symlink.
			now := time.Now()
			if pendingSince.IsZero() {
				pendingSince = now
			}
			wait := s.cfg.Debounce
			if limit := pendingSince.Add(10 * s.cfg.Debounce).Sub(now); limit < wait {
				wait = max(limit, 0)
			}
			debounce.Reset(wait)
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			s.log.Warn("watch error; relying on periodic rescans", "error", err)
		case <-debounce.C:
			pendingSince = time.Time{}
			s.reload(ctx)
		case <-rescan.C:
			if !watching {
				watching = w.Add(s.cfg.Dir) == nil
			}
			s.reload(ctx)
		}
	}
}

// settleTime is how long files must stay unchanged before a changed
// directory is loaded, so that a file caught half-written (truncated, not
// yet filled) is not taken for an edit that deletes policies.
func (s *Source) settleTime() time.Duration {
	return min(s.cfg.Debounce, 50*time.Millisecond)
}

// readSettled reads the directory until two reads settleTime apart agree.
// It returns ok false if the files are still changing after a few tries
// (the next event or rescan will try again) or ctx is done.
func (s *Source) readSettled(ctx context.Context) (files map[string][]byte, sum [sha256.Size]byte, changed, ok bool, err error) {
	files, err = Read(s.cfg.Dir)
	if err != nil {
		return nil, sum, true, true, err
	}
	sum = fingerprint(files)
	if sum == s.lastRead {
		return files, sum, false, true, nil
	}
	for range 5 {
		select {
		case <-ctx.Done():
			return nil, sum, true, false, nil
		case <-time.After(s.settleTime()):
		}
		again, err := Read(s.cfg.Dir)
		if err != nil {
			return nil, sum, true, true, err
		}
		againSum := fingerprint(again)
		if againSum == sum {
			return files, sum, true, true, nil
		}
		files, sum = again, againSum
	}
	return nil, sum, true, false, nil
}

// fingerprint hashes file names and contents, to tell cheaply whether the
// directory changed since it was last loaded.
func fingerprint(files map[string][]byte) [sha256.Size]byte {
	h := sha256.New()
	for _, name := range slices.Sorted(maps.Keys(files)) {
		fmt.Fprintf(h, "%d:%s%d:", len(name), name, len(files[name]))
		h.Write(files[name])
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// reload re-reads the whole directory and publishes it if it is valid and
// different. A rejected directory is logged once per distinct error, not on
// every rescan.
func (s *Source) reload(ctx context.Context) {
	files, sum, changed, ok, err := s.readSettled(ctx)
	if !ok || (!changed && err == nil) {
		return
	}
	var (
		snap     *config.Snapshot
		warnings []config.Warning
	)
	if err == nil {
		s.lastRead = sum
		snap, warnings, err = config.Load(files)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		if s.lastErr == nil || s.lastErr.Error() != err.Error() {
			attrs := []any{"error", err.Error(), "version", s.current.Version}
			var se *config.SourceError
			if errors.As(err, &se) {
				attrs = append([]any{"source", se.Source}, attrs...)
			}
			s.log.Error("config rejected; keeping the last good version", attrs...)
		}
		s.lastErr = err
		return
	}
	wasBad := s.lastErr != nil
	s.lastErr = nil
	if snap.Version == s.current.Version {
		if wasBad {
			s.log.Info("config valid again; unchanged", "version", snap.Version)
		}
		return
	}
	s.logWarnings(warnings)
	s.log.Info("config updated", "version", snap.Version, "previous", s.current.Version, "resources", len(snap.All()))
	s.current = snap
	for sub := range s.subs {
		publish(sub.ch, snap)
	}
}

// publish replaces whatever sub holds with snap. Only the Source sends,
// under its lock, so after the drain the send cannot block.
func publish(ch chan *config.Snapshot, snap *config.Snapshot) {
	select {
	case ch <- snap:
	default:
		select {
		case <-ch:
		default:
		}
		ch <- snap
	}
}

func (s *Source) logWarnings(ws []config.Warning) {
	for _, w := range ws {
		s.log.Warn("config warning", "source", w.Source, "warning", w.Message)
	}
}
