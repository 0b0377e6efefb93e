//go:build !linux

package filesource

import "os"

// statOf reports false: the cache is used only where the change time is
// known to be read (Linux); elsewhere every read reads every file.
func statOf(os.FileInfo) (fileStat, bool) { return fileStat{}, false }
