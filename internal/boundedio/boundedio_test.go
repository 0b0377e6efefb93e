package boundedio_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zmesh/zmesh/internal/boundedio"
)

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, n int) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(strings.Repeat("x", n)), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name    string
		path    string
		max     int64
		wantLen int
		wantErr error
	}{
		{"empty", write("empty", 0), 10, 0, nil},
		{"below", write("below", 9), 10, 9, nil},
		{"at the bound", write("at", 10), 10, 10, nil},
		{"one over", write("over", 11), 10, 0, boundedio.ErrTooLarge},
		{"far over", write("far", 1<<16), 10, 0, boundedio.ErrTooLarge},
		{"missing", filepath.Join(dir, "missing"), 10, 0, fs.ErrNotExist},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := boundedio.ReadFile(tc.path, tc.max)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil || len(b) != tc.wantLen {
				t.Fatalf("got %d bytes, %v; want %d", len(b), err, tc.wantLen)
			}
		})
	}
}

// Special files are refused, not read: a device that never ends, and a
// FIFO, which must not hang its reader waiting for a writer.
func TestReadFileRefusesSpecialFiles(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/dev/zero", fifo, t.TempDir()} {
		done := make(chan error, 1)
		go func() {
			b, err := boundedio.ReadFile(path, 4096)
			if b != nil {
				err = errors.Join(err, errors.New("returned data"))
			}
			done <- err
		}()
		select {
		case err := <-done:
			if !errors.Is(err, boundedio.ErrNotRegular) {
				t.Errorf("%s: %v; want ErrNotRegular", path, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: ReadFile hung", path)
		}
	}
}
