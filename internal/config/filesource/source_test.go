package filesource

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	security "istio.io/api/security/v1beta1"

	"github.com/zmesh/zmesh/internal/config"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func pa(name, mode string) string {
	return "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: " + name + ", namespace: foo}\nspec: {mtls: {mode: " + mode + "}}\n"
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// syncBuffer is a log sink that tests read while the Source writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// harness runs a Source on a temp dir for one test and stops it at cleanup.
type harness struct {
	t   *testing.T
	dir string
	src *Source
	log *syncBuffer
	ch  <-chan *config.Snapshot
}

func start(t *testing.T, files map[string]string, cfg Config) *harness {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		write(t, filepath.Join(dir, name), data)
	}
	h := &harness{t: t, dir: dir, log: &syncBuffer{}}
	cfg.Dir = dir
	cfg.Logger = slog.New(slog.NewTextHandler(h.log, nil))
	if cfg.Rescan == 0 {
		cfg.Rescan = time.Hour // event-driven unless a test asks for rescans
	}
	src, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.src = src
	ch, cancel := src.Subscribe()
	h.ch = ch
	<-ch // the initial snapshot
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		cancel()
	})
	return h
}

// next waits for the next published snapshot.
func (h *harness) next(within time.Duration) *config.Snapshot {
	h.t.Helper()
	select {
	case s := <-h.ch:
		return s
	case <-time.After(within):
		h.t.Fatalf("no snapshot within %v; log:\n%s", within, h.log.String())
		return nil
	}
}

// none asserts that nothing is published for a while.
func (h *harness) none(during time.Duration) {
	h.t.Helper()
	select {
	case s := <-h.ch:
		h.t.Fatalf("unexpected snapshot %s", s.Version)
	case <-time.After(during):
	}
}

func mode(t *testing.T, s *config.Snapshot, name string) string {
	t.Helper()
	for _, r := range s.List(config.KindPeerAuthentication) {
		if r.Name == name {
			return r.Spec.(*security.PeerAuthentication).GetMtls().GetMode().String()
		}
	}
	return ""
}

func TestNewRequiresAReadableDirectory(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Error("New without Dir succeeded")
	}
	if _, err := New(Config{Dir: filepath.Join(t.TempDir(), "missing")}); err == nil {
		t.Error("New on a missing directory succeeded")
	}
}

// A control plane must start whatever one file says: the bad document is
// rejected alone and reported, the others are served.
func TestNewStartsWithABadDocumentRejected(t *testing.T) {
	h := start(t, map[string]string{"bad.yaml": pa("a", "STRICTER"), "good.yaml": pa("b", "STRICT")}, Config{})
	if got := mode(t, h.src.Current(), "b"); got != "STRICT" {
		t.Errorf("good.yaml's policy: mode %q", got)
	}
	if got := mode(t, h.src.Current(), "a"); got != "" {
		t.Errorf("the rejected policy is in force: mode %q", got)
	}
	err := h.src.LastError()
	if err == nil || !strings.Contains(err.Error(), "bad.yaml#1") || !strings.Contains(err.Error(), "STRICTER") {
		t.Errorf("LastError = %v, want one naming bad.yaml and the problem", err)
	}
	rej := h.src.Rejected()
	if len(rej) != 1 || rej[0].Key != "foo/a" || rej[0].Kept {
		t.Errorf("Rejected = %v, want foo/a, nothing kept", rej)
	}
	if !strings.Contains(h.log.String(), "config rejected; no earlier version of it in force") {
		t.Errorf("rejection not logged:\n%s", h.log.String())
	}
}

func TestEmptyDirectoryIsAnEmptySnapshot(t *testing.T) {
	h := start(t, nil, Config{})
	if n := len(h.src.Current().All()); n != 0 {
		t.Errorf("%d resources in an empty directory", n)
	}
}

func TestValidEditPublishesQuickly(t *testing.T) {
	h := start(t, map[string]string{"pa.yaml": pa("a", "STRICT")}, Config{})
	old := h.src.Current()
	begin := time.Now()
	write(t, filepath.Join(h.dir, "pa.yaml"), pa("a", "DISABLE"))
	s := h.next(5 * time.Second)
	t.Logf("published after %v", time.Since(begin))
	if s.Version == old.Version || !strings.Contains(mode(t, s, "a"), "DISABLE") {
		t.Errorf("new snapshot %s has mode %q", s.Version, mode(t, s, "a"))
	}
	if h.src.Current() != s {
		t.Error("Current is not the published snapshot")
	}
	if strings.Contains(h.log.String(), "level=ERROR") {
		t.Errorf("errors logged:\n%s", h.log.String())
	}
}

func TestMalformedEditIsRejectedAloneUntilFixed(t *testing.T) {
	h := start(t, map[string]string{"pa.yaml": pa("a", "STRICT"), "other.yaml": pa("b", "STRICT")}, Config{})

	// A broken file and a valid change in another file: the change
	// applies, the broken file's policy keeps its last good version.
	write(t, filepath.Join(h.dir, "pa.yaml"), pa("a", "STRICT")+"  bogus: [\n")
	write(t, filepath.Join(h.dir, "other.yaml"), pa("b", "DISABLE"))
	s := h.next(5 * time.Second)
	for s.Version != h.src.Current().Version || mode(t, s, "b") != "DISABLE" {
		s = h.next(5 * time.Second)
	}
	if got := mode(t, s, "a"); got != "STRICT" {
		t.Errorf("the broken file's policy: mode %q, want its last good STRICT", got)
	}
	waitLog(t, h.log, "config rejected; keeping its last good version")
	if h.src.LastError() == nil {
		t.Fatal("LastError is nil with a rejected file")
	}
	logs := h.log.String()
	if n := strings.Count(logs, "level=ERROR"); n != 1 {
		t.Errorf("%d error lines, want exactly one:\n%s", n, logs)
	}
	if !strings.Contains(logs, "pa.yaml#1") {
		t.Errorf("error line does not name the file:\n%s", logs)
	}

	// A policy that parses but is invalid is rejected the same way, named.
	write(t, filepath.Join(h.dir, "pa.yaml"), "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: d, namespace: foo}\nspec: {action: DENY}\n")
	waitLog(t, h.log, "DENY action without")
	if !strings.Contains(h.log.String(), "kind=AuthorizationPolicy namespace=foo name=d") {
		t.Errorf("rejection line does not name the resource:\n%s", h.log.String())
	}

	// Fixed: it applies and the error clears.
	write(t, filepath.Join(h.dir, "pa.yaml"), pa("a", "PERMISSIVE"))
	s = h.next(5 * time.Second)
	for mode(t, s, "a") != "PERMISSIVE" {
		s = h.next(5 * time.Second)
	}
	if mode(t, s, "b") != "DISABLE" {
		t.Errorf("after fix: b=%q", mode(t, s, "b"))
	}
	if h.src.LastError() != nil || len(h.src.Rejected()) != 0 {
		t.Errorf("after fix: LastError %v, Rejected %v", h.src.LastError(), h.src.Rejected())
	}
}

// An oversized file is rejected alone; removing it clears the error even
// though the content is then the same as before it came.
func TestOversizedFileRejectedAloneAndClearedWhenRemoved(t *testing.T) {
	h := start(t, map[string]string{"a.yaml": pa("a", "STRICT")}, Config{Debounce: 10 * time.Millisecond})
	big := filepath.Join(h.dir, "big.yaml")
	write(t, big, strings.Repeat("#", config.MaxInputSize+1))
	waitLog(t, h.log, "big.yaml")
	if h.src.LastError() == nil || !strings.Contains(h.src.LastError().Error(), "larger than") {
		t.Fatalf("LastError = %v, want the size error", h.src.LastError())
	}
	write(t, filepath.Join(h.dir, "a.yaml"), pa("a", "DISABLE"))
	if s := h.next(5 * time.Second); mode(t, s, "a") != "DISABLE" {
		t.Errorf("an edit beside the oversized file: mode %q", mode(t, s, "a"))
	}
	write(t, filepath.Join(h.dir, "a.yaml"), pa("a", "STRICT"))
	h.next(5 * time.Second)
	if err := os.Remove(big); err != nil {
		t.Fatal(err)
	}
	eventually(t, "LastError cleared after the oversized file went", func() bool { return h.src.LastError() == nil })
}

// A directory that is briefly unreadable (here: moved away and back)
// reports it, and the error clears when it is back with the same content.
func TestBrieflyUnreadableDirectoryClearsTheError(t *testing.T) {
	h := start(t, map[string]string{"a.yaml": pa("a", "STRICT")}, Config{Rescan: 20 * time.Millisecond})
	good := h.src.Current()
	away := h.dir + ".away"
	if err := os.Rename(h.dir, away); err != nil {
		t.Fatal(err)
	}
	eventually(t, "LastError set while the directory is gone", func() bool { return h.src.LastError() != nil })
	if h.src.Current() != good {
		t.Error("the snapshot changed while the directory was unreadable")
	}
	if err := os.Rename(away, h.dir); err != nil {
		t.Fatal(err)
	}
	eventually(t, "LastError cleared with the directory back", func() bool { return h.src.LastError() == nil })
	h.none(100 * time.Millisecond)
}

func TestFileRemovalPublishes(t *testing.T) {
	h := start(t, map[string]string{"a.yaml": pa("a", "STRICT"), "b.yml": pa("b", "STRICT")}, Config{})
	if err := os.Remove(filepath.Join(h.dir, "b.yml")); err != nil {
		t.Fatal(err)
	}
	s := h.next(5 * time.Second)
	if got := len(s.List(config.KindPeerAuthentication)); got != 1 {
		t.Errorf("%d PeerAuthentications after removal, want 1", got)
	}
}

// Editors and `kubectl`-style tools write a temporary file and rename it
// over the old one.
func TestRenameIntoPlacePublishes(t *testing.T) {
	h := start(t, map[string]string{"a.yaml": pa("a", "STRICT")}, Config{})
	tmp := filepath.Join(h.dir, ".a.yaml.tmp")
	write(t, tmp, pa("a", "DISABLE"))
	if err := os.Rename(tmp, filepath.Join(h.dir, "a.yaml")); err != nil {
		t.Fatal(err)
	}
	s := h.next(5 * time.Second)
	if !strings.Contains(mode(t, s, "a"), "DISABLE") {
		t.Errorf("mode after rename = %q", mode(t, s, "a"))
	}
}

func TestUnchangedContentPublishesNothing(t *testing.T) {
	h := start(t, map[string]string{"a.yaml": pa("a", "STRICT")}, Config{})
	write(t, filepath.Join(h.dir, "a.yaml"), "# reformatted\n"+pa("a", "STRICT"))
	write(t, filepath.Join(h.dir, "notes.txt"), "not config")
	write(t, filepath.Join(h.dir, ".hidden.yaml"), "not: [valid")
	write(t, filepath.Join(h.dir, "a.yaml~"), "not: [valid")
	h.none(500 * time.Millisecond)
	if h.src.LastError() != nil {
		t.Errorf("ignored files were read: %v", h.src.LastError())
	}
}

// TestOnlyChangedFilesAreParsed: an edit of one file parses that file
// alone; a file touched, or rewritten by a rename over it, with the same
// content is not parsed again.
func TestOnlyChangedFilesAreParsed(t *testing.T) {
	h := start(t, map[string]string{"a.yaml": pa("a", "STRICT"), "b.yaml": pa("b", "STRICT"), "c.yaml": pa("c", "STRICT")}, Config{})
	if n := h.src.parsedFiles(); n != 3 {
		t.Fatalf("parsed %d files at start, want 3", n)
	}
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(filepath.Join(h.dir, "b.yaml"), later, later); err != nil {
		t.Fatal(err)
	}
	renameOver := func(name, data string) {
		tmp := filepath.Join(h.dir, "."+name+".tmp")
		write(t, tmp, data)
		if err := os.Rename(tmp, filepath.Join(h.dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	renameOver("c.yaml", pa("c", "STRICT"))
	renameOver("a.yaml", pa("a", "DISABLE"))
	s := h.next(5 * time.Second)
	if !strings.Contains(mode(t, s, "a"), "DISABLE") || !strings.Contains(mode(t, s, "c"), "STRICT") {
		t.Errorf("modes after the edit: a %q, c %q", mode(t, s, "a"), mode(t, s, "c"))
	}
	if n := h.src.parsedFiles(); n != 4 {
		t.Errorf("parsed %d files in all, want 4 (the edited one again)", n)
	}
}

func TestRescanCatchesMissedEvents(t *testing.T) {
	// A debounce of an hour: only the periodic rescan can see the change.
	h := start(t, map[string]string{"a.yaml": pa("a", "STRICT")}, Config{Debounce: time.Hour, Rescan: 50 * time.Millisecond})
	write(t, filepath.Join(h.dir, "a.yaml"), pa("a", "DISABLE"))
	s := h.next(5 * time.Second)
	if !strings.Contains(mode(t, s, "a"), "DISABLE") {
		t.Errorf("mode after rescan = %q", mode(t, s, "a"))
	}
}

// A subscriber that reads late sees the newest snapshot, not a backlog,
// and a subscriber that never reads does not stall the Source.
func TestSlowSubscriberGetsLatest(t *testing.T) {
	h := start(t, map[string]string{"a.yaml": pa("a", "STRICT")}, Config{Debounce: 10 * time.Millisecond})
	stuck, cancelStuck := h.src.Subscribe()
	defer cancelStuck()
	_ = stuck // never read
	for i, m := range []string{"DISABLE", "PERMISSIVE", "UNSET"} {
		write(t, filepath.Join(h.dir, "a.yaml"), pa("a", m))
		waitVersion(t, h.src, i+1, h.log)
	}
	latest := h.src.Current()
	got := <-stuck
	if got != latest {
		t.Errorf("stalled subscriber got %s, want latest %s", got.Version, latest.Version)
	}
}

func TestCancelClosesAndIsIdempotent(t *testing.T) {
	h := start(t, nil, Config{})
	ch, cancel := h.src.Subscribe()
	<-ch
	cancel()
	cancel()
	if _, ok := <-ch; ok {
		t.Error("channel still open after cancel")
	}
}

func TestIsConfigFile(t *testing.T) {
	for name, want := range map[string]bool{
		"a.yaml": true, "a.yml": true, "a.YAML": false, "a.json": false, ".a.yaml": false,
		"a.yaml~": false, "#a.yaml#": false, ".a.yaml.swp": false, "..data": false, "yaml": false,
	} {
		if got := IsConfigFile(name); got != want {
			t.Errorf("IsConfigFile(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestReadRejectsOversizedFile(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "big.yaml"), strings.Repeat("#", config.MaxInputSize+1))
	if _, err := Read(dir); err == nil || !strings.Contains(err.Error(), "big.yaml") {
		t.Errorf("Read = %v, want a size error naming big.yaml", err)
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 5s: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitLog(t *testing.T, log *syncBuffer, substr string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(log.String(), substr) {
		if time.Now().After(deadline) {
			t.Fatalf("log never contained %q:\n%s", substr, log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitVersion waits until n updates have been logged.
func waitVersion(t *testing.T, src *Source, n int, log *syncBuffer) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for strings.Count(log.String(), "config updated") < n {
		if time.Now().After(deadline) {
			t.Fatalf("fewer than %d updates:\n%s", n, log.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}
