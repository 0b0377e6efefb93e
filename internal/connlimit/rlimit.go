//go:build unix

package connlimit

import "syscall"

// DefaultTotal sizes a listener's Total from the process's open-file limit
// (Go raises the soft limit to the hard one at start, since Go 1.19): three
// quarters of it, leaving the rest for the process's own files, outgoing
// connections and other listeners, and at most 16384, past which the
// memory of that many TLS connections (tens of KiB each) is the next thing
// to run out. It falls back to 768 (three quarters of the common 1024)
// when the limit cannot be read.
func DefaultTotal() int {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil || r.Cur == 0 {
		return 768
	}
	return TotalFor(r.Cur)
}

// TotalFor is DefaultTotal for an open-file limit of nofile.
func TotalFor(nofile uint64) int {
	return int(max(1, min(16384, nofile/4*3)))
}
