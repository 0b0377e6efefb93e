//go:build linux

package exepages

import (
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// rssFile reads the process's resident file-backed memory, in bytes.
func rssFile(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "RssFile:"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n << 10
		}
	}
	t.Fatal("no RssFile in /proc/self/status")
	return 0
}

// TestRelease drops the test binary's own pages and then keeps running
// code and reading data that were dropped.
func TestRelease(t *testing.T) {
	before := rssFile(t)
	released, err := Release()
	if err != nil {
		t.Fatal(err)
	}
	after := rssFile(t)
	t.Logf("released %d KiB; RssFile %d -> %d KiB", released>>10, before>>10, after>>10)
	if released < 1<<20 {
		t.Errorf("released %d bytes; a test binary keeps more than 1 MiB of itself resident", released)
	}
	// What the test runs next is faulted back at once, with its
	// neighbours, so only a fall is certain.
	if after >= before {
		t.Errorf("RssFile went from %d to %d KiB after releasing %d KiB", before>>10, after>>10, released>>10)
	}
	// Code and read-only data used before, and now faulted back in.
	re := regexp.MustCompile(`^(\d+)-(\w+)$`)
	if m := re.FindStringSubmatch("42-ok"); len(m) != 3 || m[2] != "ok" {
		t.Errorf("regexp after Release = %q", m)
	}
	runtime.GC()
	if got := strconv.Quote("é\x00"); got != `"é\x00"` {
		t.Errorf("Quote after Release = %s", got)
	}
	again, err := Release()
	if err != nil {
		t.Fatal(err)
	}
	if again >= released {
		t.Errorf("a second Release gave back %d bytes, the first %d: the first did not drop them", again, released)
	}
}
