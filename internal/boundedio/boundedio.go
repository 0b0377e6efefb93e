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
	"os"
)

// ErrTooLarge is wrapped by ReadFile's error when the file exceeds the
// bound.
var ErrTooLarge = errors.New("file too large")

// ReadFile reads path, refusing with an error wrapping ErrTooLarge when it
// holds more than max bytes. It reads at most max+1 bytes whatever the
// file claims to hold, so a file that grows while read, or a special file
// whose size reads as 0, is bounded too. Errors name the path.
func ReadFile(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Read(f, path, max)
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
