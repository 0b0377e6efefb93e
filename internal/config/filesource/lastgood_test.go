package filesource

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zmesh/zmesh/internal/config"
)

// restart runs New on dir as a restarted control plane does, with the
// store at lastGood ("" for none), and returns the snapshot in force.
func restart(t *testing.T, dir, lastGood string) (*config.Snapshot, []*config.SourceError) {
	t.Helper()
	src, err := New(Config{Dir: dir, LastGood: lastGood, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return src.Current(), src.Rejected()
}

// TestLastGoodSurvivesARestart: a file broken while the control plane was
// down keeps its last good version in force after the restart (the
// STRICT PeerAuthentication stays STRICT) — without the store it is lost
// —, a file removed meanwhile takes its resources with it, and the store
// follows each valid edit made while running.
func TestLastGoodSurvivesARestart(t *testing.T) {
	store := filepath.Join(t.TempDir(), "last-good")
	h := start(t, map[string]string{"strict.yaml": pa("strict", "STRICT"), "other.yaml": pa("other", "PERMISSIVE")}, Config{LastGood: store})
	// A valid edit while running is kept.
	write(t, filepath.Join(h.dir, "other.yaml"), pa("other", "DISABLE"))
	if s := h.next(5 * time.Second); mode(t, s, "other") != "DISABLE" {
		t.Fatalf("edit not applied: %q", mode(t, s, "other"))
	}
	eventually(t, "the edit kept in the store", func() bool {
		b, _ := os.ReadFile(filepath.Join(store, "other.yaml"))
		return strings.Contains(string(b), "DISABLE")
	})

	// While down: strict.yaml broken, other.yaml removed.
	write(t, filepath.Join(h.dir, "strict.yaml"), "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: strict, namespace: foo}\nspec: {mtls: {mode: STRICTEST}}\n")
	if err := os.Remove(filepath.Join(h.dir, "other.yaml")); err != nil {
		t.Fatal(err)
	}
	snap, rejected := restart(t, h.dir, store)
	if got := mode(t, snap, "strict"); got != "STRICT" {
		t.Errorf("after a restart with strict.yaml broken: mode %q, want the last good STRICT", got)
	}
	if len(rejected) != 1 || !rejected[0].Kept {
		t.Errorf("rejected %v, want strict.yaml's document, its last good version kept", rejected)
	}
	if got := mode(t, snap, "other"); got != "" {
		t.Errorf("a file removed while down still in force: %q", got)
	}
	if _, err := os.Stat(filepath.Join(store, "other.yaml")); !os.IsNotExist(err) {
		t.Errorf("the removed file still in the store: %v", err)
	}
	// The broken content never replaces the stored one: another restart
	// still has STRICT.
	if snap, _ := restart(t, h.dir, store); mode(t, snap, "strict") != "STRICT" {
		t.Error("second restart lost the last good version")
	}
	// What the store prevents.
	if snap, _ := restart(t, h.dir, ""); mode(t, snap, "strict") != "" {
		t.Error("without a store the broken file's policy should be absent (the test checks nothing)")
	}
	// Fixed, it is the new content that is kept.
	write(t, filepath.Join(h.dir, "strict.yaml"), pa("strict", "PERMISSIVE"))
	if snap, rejected := restart(t, h.dir, store); mode(t, snap, "strict") != "PERMISSIVE" || len(rejected) != 0 {
		t.Errorf("after the fix: mode %q, rejected %v", mode(t, snap, "strict"), rejected)
	}
}

// TestLastGoodStoreDamaged: a stored file that does not load, or a store
// that cannot be read, is no last good version, and the start goes on.
func TestLastGoodStoreDamaged(t *testing.T) {
	dir, store := t.TempDir(), t.TempDir()
	write(t, filepath.Join(dir, "a.yaml"), "not: [valid")
	write(t, filepath.Join(store, "a.yaml"), "kind: [broken")
	snap, rejected := restart(t, dir, store)
	if len(snap.All()) != 0 || len(rejected) != 1 || rejected[0].Kept {
		t.Errorf("from a damaged store: %d resources, rejected %v", len(snap.All()), rejected)
	}
	notADir := filepath.Join(t.TempDir(), "file")
	write(t, notADir, "x")
	if snap, _ := restart(t, dir, notADir); len(snap.All()) != 0 {
		t.Errorf("from an unusable store: %d resources", len(snap.All()))
	}
}
