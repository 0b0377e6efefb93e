package localsock

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
)

// Listen listens on the unix socket at path. It creates the parent
// directory (mode 0700) if missing, removes a stale socket left by an
// earlier run (but nothing that is not a socket), and makes the socket mode
// 0600. Closing the listener removes the socket file.
func Listen(path string) (*net.UnixListener, error) {
	path = strings.TrimPrefix(path, "unix://")
	if path == "" {
		return nil, errors.New("localsock: empty socket path")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("localsock: create socket dir: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("localsock: %s exists and is not a socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("localsock: remove stale socket: %w", err)
		}
	}
	lis, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("localsock: listen: %w", err)
	}
	// The directory (0700 when we created it) already keeps other users out
	// between bind and chmod.
	if err := os.Chmod(path, 0o600); err != nil {
		lis.Close()
		return nil, fmt.Errorf("localsock: chmod socket: %w", err)
	}
	lis.SetUnlinkOnClose(true)
	return lis, nil
}
