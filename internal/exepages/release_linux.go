//go:build linux

package exepages

import (
	"fmt"
	"os"
	"syscall"
)

// Release unmaps this process's resident pages of its own executable's
// read-only mappings (see the package doc) and returns how many bytes of
// them were resident.
func Release() (int64, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, fmt.Errorf("exepages: %w", err)
	}
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return 0, fmt.Errorf("exepages: %w", err)
	}
	var released int64
	for _, m := range Select(smaps, exe) {
		// Only addresses are passed: nothing here is Go memory.
		if _, _, errno := syscall.Syscall(syscall.SYS_MADVISE, m.Start, m.End-m.Start, syscall.MADV_DONTNEED); errno != 0 {
			return released, fmt.Errorf("exepages: madvise %#x-%#x: %w", m.Start, m.End, errno)
		}
		released += m.Rss
	}
	return released, nil
}
