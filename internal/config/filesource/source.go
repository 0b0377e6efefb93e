// Package filesource serves Istio resources from a directory of YAML
// files. It watches the directory and publishes a new config.Snapshot when
// the files' content changes. Documents are taken one by one
// (config.Reload): a bad one is logged and rejected alone, what it defined
// keeps its last good version, and every other edit applies, so that one
// file cannot hold back the policy of the whole mesh.
package filesource

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
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
	// LastGood, when set, is a directory of the caller's own where the
	// source keeps each file's last content that loaded with nothing
	// rejected, and loads over at start, so that what was in force
	// survives a restart while a file is broken (see lastGood). It must
	// not be inside Dir.
	LastGood string
}

// Source publishes the snapshots of one directory. Create it with New, then
// call Run. Current and Subscribe are safe for concurrent use.
type Source struct {
	cfg Config
	log *slog.Logger

	// Owned by Run's goroutine (and New, before Run).
	lastRead [sha256.Size]byte // fingerprint of the files last loaded
	logged   map[string]bool   // rejections logged, to log each once
	loader   config.Loader     // parses only the files whose content changed
	cache    fileCache         // reads only the files whose status changed
	lastGood *lastGood         // nil without Config.LastGood

	mu       sync.Mutex
	current  *config.Snapshot
	rejected []*config.SourceError // of the content last loaded
	readErr  error                 // why the directory could not be read, until it can
	parsed   int                   // files parsed so far (loader.Parsed), for tests
	subs     map[*subscriber]struct{}
}

type subscriber struct {
	ch chan *config.Snapshot
}

// New loads cfg.Dir once and returns a Source serving that snapshot. It
// fails only when the directory cannot be read. Documents that fail to
// parse or validate are rejected one by one, as while running (see
// Rejected): a control plane must be able to start, and renew
// certificates, whatever one namespace's file says.
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
	var cache fileCache
	files, unreadable, err := readDir(cfg.Dir, &cache)
	if err != nil {
		return nil, err
	}
	s := &Source{cache: cache, cfg: cfg, log: log.With("dir", cfg.Dir), subs: map[*subscriber]struct{}{},
		lastRead: fingerprint(files, unreadable), logged: map[string]bool{}}
	var prev *config.Snapshot
	if cfg.LastGood != "" {
		s.lastGood = openLastGood(cfg.LastGood, cfg.Dir, s.log)
		prev = s.lastGood.snapshot()
	}
	snap, warnings, rejected := s.loader.Reload(prev, files, unreadable)
	if s.lastGood != nil {
		s.lastGood.save(files, unreadable, rejected)
	}
	s.current, s.rejected, s.parsed = snap, rejected, s.loader.Parsed()
	s.logWarnings(warnings)
	s.logRejections(rejected)
	s.log.Info("config loaded", "version", snap.Version, "resources", len(snap.All()), "rejected", len(rejected))
	return s, nil
}

// Current returns the snapshot in force. It is never nil.
func (s *Source) Current() *config.Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.current
}

// Rejected returns the documents of the directory's latest content that
// are not in force, each with why and whether a last good version stays
// (config.Reload). The caller must not modify them.
func (s *Source) Rejected() []*config.SourceError {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.rejected)
}

// LastError returns why the snapshot in force is not exactly the
// directory's latest content: the directory could not be read, or some
// documents were rejected (all joined). It is nil when every resource of
// the latest content is in force.
func (s *Source) LastError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	errs := []error{s.readErr}
	for _, r := range s.rejected {
		errs = append(errs, r)
	}
	return errors.Join(errs...)
}

// parsedFiles returns how many files the Source has parsed since New.
func (s *Source) parsedFiles() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.parsed
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
// (the next event or rescan will try again) or ctx is done, and err if the
// directory cannot be read.
func (s *Source) readSettled(ctx context.Context) (r reading, ok bool, err error) {
	if r, err = readFingerprinted(s.cfg.Dir, &s.cache); err != nil {
		return r, true, err
	}
	if r.sum == s.lastRead {
		return r, true, nil
	}
	for range 5 {
		select {
		case <-ctx.Done():
			return r, false, nil
		case <-time.After(s.settleTime()):
		}
		again, err := readFingerprinted(s.cfg.Dir, &s.cache)
		if err != nil {
			return again, true, err
		}
		if again.sum == r.sum {
			return r, true, nil
		}
		r = again
	}
	return r, false, nil
}

// reading is one read of the directory.
type reading struct {
	files      map[string][]byte
	unreadable map[string]error
	sum        [sha256.Size]byte
}

func readFingerprinted(dir string, cache *fileCache) (reading, error) {
	files, unreadable, err := readDir(dir, cache)
	if err != nil {
		return reading{}, err
	}
	return reading{files: files, unreadable: unreadable, sum: fingerprint(files, unreadable)}, nil
}

// fingerprint hashes file names and contents, and the errors of the files
// that could not be read, to tell cheaply whether the directory changed
// since it was last loaded.
func fingerprint(files map[string][]byte, unreadable map[string]error) [sha256.Size]byte {
	h := sha256.New()
	for _, name := range slices.Sorted(maps.Keys(files)) {
		fmt.Fprintf(h, "%d:%s%d:", len(name), name, len(files[name]))
		h.Write(files[name])
	}
	for _, name := range slices.Sorted(maps.Keys(unreadable)) {
		msg := unreadable[name].Error()
		fmt.Fprintf(h, "!%d:%s%d:%s", len(name), name, len(msg), msg)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// reload re-reads the whole directory and, if its content changed, loads
// it with config.Reload over the snapshot in force and publishes the result
// if it differs. Only the files whose content changed are parsed again
// (config.Loader): one edit in a directory of a thousand files costs one
// parse. A read that fails leaves everything as it is but for
// LastError; the next read that succeeds clears that, whether or not the
// content changed meanwhile.
func (s *Source) reload(ctx context.Context) {
	r, ok, err := s.readSettled(ctx)
	if !ok {
		return
	}
	if err != nil {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.readErr == nil || s.readErr.Error() != err.Error() {
			s.log.Error("config directory unreadable; keeping the config in force", "error", err.Error(), "version", s.current.Version)
		}
		s.readErr = err
		return
	}
	s.mu.Lock()
	if s.readErr != nil {
		s.log.Info("config directory readable again")
		s.readErr = nil
	}
	prev := s.current
	s.mu.Unlock()
	if r.sum == s.lastRead {
		return
	}
	s.lastRead = r.sum
	snap, warnings, rejected := s.loader.Reload(prev, r.files, r.unreadable)
	if s.lastGood != nil {
		s.lastGood.save(r.files, r.unreadable, rejected)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.parsed = s.loader.Parsed()
	hadRejected := len(s.rejected) > 0
	s.rejected = rejected
	s.logRejections(rejected)
	if snap.Version == s.current.Version {
		if hadRejected && len(rejected) == 0 {
			s.log.Info("config valid again; unchanged", "version", snap.Version)
		}
		return
	}
	s.logWarnings(warnings)
	s.log.Info("config updated", "version", snap.Version, "previous", s.current.Version, "resources", len(snap.All()), "rejected", len(rejected))
	s.current = snap
	for sub := range s.subs {
		publish(sub.ch, snap)
	}
}

// logRejections logs one line per rejected document, with where it is,
// what it defines and whether its last good version stays, once for as
// long as it stays rejected the same way.
func (s *Source) logRejections(rejected []*config.SourceError) {
	now := map[string]bool{}
	for _, r := range rejected {
		key := fmt.Sprintf("%s|%t", r.Error(), r.Kept)
		now[key] = true
		if s.logged[key] {
			continue
		}
		ns, name, _ := strings.Cut(r.Key, "/")
		msg := "config rejected; no earlier version of it in force"
		if r.Kept {
			msg = "config rejected; keeping its last good version"
		}
		s.log.Error(msg, "source", r.Source, "kind", string(r.Kind), "namespace", ns, "name", name, "error", r.Err.Error())
	}
	s.logged = now
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
