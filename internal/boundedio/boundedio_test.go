package boundedio_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

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

// A special file whose size reads as zero is still bounded by what is read.
func TestReadFileBoundsWhatStatCannot(t *testing.T) {
	b, err := boundedio.ReadFile("/dev/zero", 4096)
	if !errors.Is(err, boundedio.ErrTooLarge) || b != nil {
		t.Fatalf("/dev/zero: %d bytes, %v; want ErrTooLarge", len(b), err)
	}
}
