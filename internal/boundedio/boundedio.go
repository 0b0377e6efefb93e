// Package boundedio reads files that a size bound protects: configuration,
// certificates, keys and tokens that an operator (or an attacker with
// write access to one directory) can replace with something huge, a FIFO
// or a device. One helper, so that every reader stops at the same place
// and says the same thing.
package boundedio

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// ErrTooLarge is wrapped by ReadFile's error when the file exceeds the
// bound.
var ErrTooLarge = errors.New("file too large")

// ErrNotRegular is wrapped by ReadFile's error when path (after symlinks)
// is not a regular file: a FIFO, a device, a directory.
var ErrNotRegular = errors.New("not a regular file")

// ReadFile reads path, refusing with an error wrapping ErrTooLarge when it
// holds more than max bytes, and one wrapping ErrNotRegular when it is not
// a regular file. It reads at most max+1 bytes whatever the file claims
// to hold, so a file that grows while read is bounded too. Errors name
// the path.
func ReadFile(path string, max int64) ([]byte, error) {
	data, _, err := ReadFileInfo(path, max)
	return data, err
}

// ReadFileInfo is ReadFile that also returns the file's status as it was
// opened, before the read: a cache may key the content on it.
//
// The file is opened non-blocking, so that a FIFO put in a file's place
// is refused at once rather than hanging its reader until a writer comes.
func ReadFileInfo(path string, max int64) ([]byte, fs.FileInfo, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("%s: %w (%s)", path, ErrNotRegular, info.Mode().Type())
	}
	data, err := Read(f, path, max)
	if err != nil {
		return nil, nil, err
	}
	return data, info, nil
}

// Read reads r to its end as ReadFile does, name naming it in errors.
func Read(r io.Reader, name string, max int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s: %w: larger than %d bytes", name, ErrTooLarge, max)
	}
	return data, nil
}
