//go:build !unix

package connlimit

// DefaultTotal is 768 where the open-file limit cannot be read.
func DefaultTotal() int { return 768 }

// TotalFor sizes Total for an open-file limit of nofile (see the unix
// DefaultTotal).
func TotalFor(nofile uint64) int { return int(max(1, min(16384, nofile/4*3))) }
