package filesource

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestCacheReadsOnlyFilesWhoseStatusChanged: a file is read again when
// anything in its status changed (content rewritten even with the same
// size and its modification time put back, a rename over it, a new
// file), when it changed too close to the last read for its status to
// vouch for it, and at every fullReadEvery-th read; otherwise its content
// is taken from the cache.
func TestCacheReadsOnlyFilesWhoseStatusChanged(t *testing.T) {
	tests := []struct {
		name   string
		margin time.Duration
		change func(t *testing.T, dir string)
		reads  int    // files read by the second read of the directory
		wantA  string // a.yaml's content as read
	}{
		{name: "nothing changed", change: func(*testing.T, string) {}, reads: 0, wantA: "a: 1\n"},
		{name: "rewritten with the same size and mtime put back", change: func(t *testing.T, dir string) {
			path := filepath.Join(dir, "a.yaml")
			before, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, path, "a: 2\n")
			if err := os.Chtimes(path, before.ModTime(), before.ModTime()); err != nil {
				t.Fatal(err)
			}
		}, reads: 1, wantA: "a: 2\n"},
		{name: "renamed over with the same content", change: func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, ".tmp"), "a: 1\n")
			if err := os.Rename(filepath.Join(dir, ".tmp"), filepath.Join(dir, "a.yaml")); err != nil {
				t.Fatal(err)
			}
		}, reads: 1, wantA: "a: 1\n"},
		{name: "a new file", change: func(t *testing.T, dir string) { writeFile(t, filepath.Join(dir, "c.yaml"), "c: 1\n") }, reads: 1, wantA: "a: 1\n"},
		{name: "a removed file", change: func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, "b.yaml")) }, reads: 0, wantA: "a: 1\n"},
		{name: "changed within the margin before the read: read again", margin: time.Hour, change: func(*testing.T, string) {}, reads: 2, wantA: "a: 1\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "a.yaml"), "a: 1\n")
			writeFile(t, filepath.Join(dir, "b.yaml"), "b: 1\n")
			// The files' status must be older than the read by the
			// margin; with a margin of a millisecond, wait that out.
			margin := tt.margin
			if margin == 0 {
				margin = time.Millisecond
			}
			time.Sleep(10 * time.Millisecond)
			c := &fileCache{margin: margin}
			if _, _, err := readDir(dir, c); err != nil {
				t.Fatal(err)
			}
			if c.misses != 2 {
				t.Fatalf("first read read %d files, want 2", c.misses)
			}
			tt.change(t, dir)
			c.misses = 0
			files, _, err := readDir(dir, c)
			if err != nil {
				t.Fatal(err)
			}
			if c.misses != tt.reads {
				t.Errorf("read %d files again, want %d", c.misses, tt.reads)
			}
			if got := string(files[filepath.Join(dir, "a.yaml")]); got != tt.wantA {
				t.Errorf("a.yaml = %q, want %q", got, tt.wantA)
			}
			if _, ok := files[filepath.Join(dir, "b.yaml")]; ok == (tt.name == "a removed file") {
				t.Errorf("b.yaml present: %t", ok)
			}
		})
	}
}

// TestCacheReadsEverythingAtIntervals: besides the first, every
// fullReadEvery-th read of the directory reads every file, whatever their
// status says.
func TestCacheReadsEverythingAtIntervals(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.yaml"), "a: 1\n")
	time.Sleep(10 * time.Millisecond)
	c := &fileCache{margin: time.Millisecond}
	full := 0
	for range 3 * fullReadEvery {
		c.misses = 0
		if _, _, err := readDir(dir, c); err != nil {
			t.Fatal(err)
		}
		full += c.misses
	}
	if full != 1+3 {
		t.Errorf("the file was read %d times in %d reads, want 4", full, 3*fullReadEvery)
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}
