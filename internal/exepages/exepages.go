// Package exepages gives back the memory a process holds in pages of its
// own executable that only its start needed.
//
// A Go binary's start touches far more of its code and read-only data
// than it later runs: every package's init, flag parsing, the protobuf
// registry, TLS and gRPC setup. The kernel also maps the neighbours of
// each page it faults in. A proxy kept ~19 MiB of its 31 MB binary
// mapped, while under load it referenced about 3 MiB of it
// (/proc/PID/clear_refs, then smaps' Referenced; docs/benchmarks.md).
//
// Release unmaps the executable's read-only mappings from this process
// (madvise MADV_DONTNEED). Their pages stay in the page cache, shared
// with any other process running the same file, and what the process
// runs afterwards is mapped back on its first use, at the cost of a
// minor fault. A mapping that holds a private copy of a page (an
// anonymous page in a file mapping: a relocation applied, a breakpoint
// set) is left alone, since dropping it would lose the change.
package exepages

import (
	"bufio"
	"bytes"
	"strconv"
	"strings"
)

// Mapping is one range of the address space that Release may drop.
type Mapping struct {
	Start, End uintptr
	Rss        int64 // resident bytes when read
}

// Select returns the mappings of smaps (the text of /proc/PID/smaps) that
// map the file exe read-only and privately and hold no anonymous page,
// with resident pages to give back.
func Select(smaps []byte, exe string) []Mapping {
	var out []Mapping
	var cur *Mapping
	var eligible, anonZero bool
	flush := func() {
		if cur != nil && eligible && anonZero && cur.Rss > 0 {
			out = append(out, *cur)
		}
		cur, eligible, anonZero = nil, false, false
	}
	sc := bufio.NewScanner(bytes.NewReader(smaps))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if m, ok := parseHeader(line); ok {
			flush()
			cur = &Mapping{Start: m.start, End: m.end}
			eligible = m.path == exe && m.perms[1] != 'w' && m.perms[3] == 'p'
			continue
		}
		if cur == nil {
			continue
		}
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch key {
		case "Rss":
			cur.Rss = parseKB(val)
		case "Anonymous":
			// Only a mapping said to hold no anonymous page is dropped:
			// a missing or unreadable line may hide a private copy.
			anonZero = parseKB(val) == 0
		}
	}
	flush()
	return out
}

type header struct {
	start, end uintptr
	perms      string
	path       string
}

// parseHeader parses a mapping's first line:
// "start-end perms offset dev inode [path]", the path possibly holding
// spaces (and ending in " (deleted)" once the file is replaced).
func parseHeader(line string) (header, bool) {
	var h header
	rest := line
	field := func() string {
		rest = strings.TrimLeft(rest, " ")
		f, r, _ := strings.Cut(rest, " ")
		rest = r
		return f
	}
	rng := field()
	lo, hi, ok := strings.Cut(rng, "-")
	if !ok {
		return h, false
	}
	start, err1 := strconv.ParseUint(lo, 16, 64)
	end, err2 := strconv.ParseUint(hi, 16, 64)
	if err1 != nil || err2 != nil || end <= start {
		return h, false
	}
	h.start, h.end = uintptr(start), uintptr(end)
	h.perms = field()
	if len(h.perms) != 4 {
		return h, false
	}
	for range 3 { // offset, dev, inode
		if field() == "" {
			return h, false
		}
	}
	h.path = strings.TrimLeft(rest, " ")
	return h, true
}

// parseKB parses " 1234 kB" into bytes, or -1.
func parseKB(s string) int64 {
	f := strings.Fields(s)
	if len(f) != 2 || f[1] != "kB" {
		return -1
	}
	n, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil || n < 0 {
		return -1
	}
	return n << 10
}
