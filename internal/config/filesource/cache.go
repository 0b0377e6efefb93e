package filesource

import (
	"os"
	"time"
)

// racyMargin is how much older than the read that captured a file's
// content its change time must be for the file's status to vouch for
// that content. A write in the same tick of the file system's clock as
// the read (or within its granularity: a second on some file systems)
// could leave size and times as they were; one made later than this
// margin after them changes the change time, which no caller can set.
// It is the "racy" rule git applies to its index.
const racyMargin = 2 * time.Second

// fullReadEvery is how many directory reads through a cache may pass
// before one reads every file again whatever its status says: a bound on
// how long a change that somehow kept a file's status (a clock set back,
// a network file system's skew) could go unseen.
const fullReadEvery = 10

// fileCache remembers, for the files of a directory, their content and
// the status they had when it was read, so that a rescan reads only the
// files whose status changed: for a thousand files, a thousand stat calls
// instead of a thousand opens, reads and closes. It is owned by one
// goroutine. A nil *fileCache caches nothing.
type fileCache struct {
	files  map[string]cachedFile
	reads  int           // directory reads since the last full one
	margin time.Duration // racyMargin unless set (tests)
	misses int           // files read, for tests
}

type cachedFile struct {
	stat fileStat
	data []byte
}

// fileStat is what says a file is unchanged: which file (device, inode:
// a rename over it or a symlink swap changes them), its size, and its
// modification and change times.
type fileStat struct {
	dev, ino      uint64
	size          int64
	mtime, ctime  int64 // ns
	trustedBefore int64 // ns: the read's start less racyMargin
}

// begin starts one read of the directory and returns the cache to read
// through (nil on a full read) and the map the read fills.
func (c *fileCache) begin() (from map[string]cachedFile, next map[string]cachedFile) {
	if c == nil {
		return nil, nil
	}
	c.reads++
	if c.reads >= fullReadEvery {
		c.reads = 0
		return nil, map[string]cachedFile{}
	}
	return c.files, map[string]cachedFile{}
}

// lookup returns the content cached for path if info, its status now, is
// the status it had when read, and that status is older than the read by
// racyMargin.
func lookup(from map[string]cachedFile, path string, info os.FileInfo) ([]byte, bool) {
	if from == nil {
		return nil, false
	}
	cf, ok := from[path]
	if !ok {
		return nil, false
	}
	st, ok := statOf(info)
	if !ok || st.dev != cf.stat.dev || st.ino != cf.stat.ino || st.size != cf.stat.size ||
		st.mtime != cf.stat.mtime || st.ctime != cf.stat.ctime {
		return nil, false
	}
	if cf.stat.ctime >= cf.stat.trustedBefore || cf.stat.mtime >= cf.stat.trustedBefore {
		return nil, false // changed too close to the read to vouch for it
	}
	return cf.data, true
}

// remember records the content of path read from a file whose status
// was info before the read started at start.
func (c *fileCache) remember(next map[string]cachedFile, path string, info os.FileInfo, start time.Time, data []byte) {
	if c == nil {
		return
	}
	c.misses++
	st, ok := statOf(info)
	if !ok {
		return
	}
	margin := c.margin
	if margin == 0 {
		margin = racyMargin
	}
	st.trustedBefore = start.Add(-margin).UnixNano()
	next[path] = cachedFile{stat: st, data: data}
}

// end makes next the cache for the following read.
func (c *fileCache) end(next map[string]cachedFile) {
	if c != nil {
		c.files = next
	}
}
