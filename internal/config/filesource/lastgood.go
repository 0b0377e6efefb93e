package filesource

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/zmesh/zmesh/internal/config"
)

// lastGood keeps on disk, in a directory of the control plane's own
// (Config.LastGood), the last content of each config file that loaded
// with nothing rejected. A restarted control plane loads over it as over
// the snapshot it had in force: a file that broke while it was down keeps
// its last good version, as it would have had the control plane kept
// running, instead of its policies vanishing (a DENY policy must not be
// lost to a typo and a restart). A file removed from the config directory
// is removed here too: removal is an edit, not a failure.
type lastGood struct {
	dir     string // the store; the config directory's files by base name
	config  string // the config directory, for the keys files have there
	log     *slog.Logger
	content map[string][]byte // what the store holds, by config path
}

// openLastGood reads the store (created 0700 when missing). A store that
// cannot be read is logged and treated as empty: the control plane starts
// as it would without one.
func openLastGood(dir, configDir string, log *slog.Logger) *lastGood {
	l := &lastGood{dir: dir, config: configDir, log: log, content: map[string][]byte{}}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		log.Warn("cannot keep the last good config", "dir", dir, "err", err.Error())
		return l
	}
	files, unreadable, err := readDir(dir, nil)
	if err != nil {
		log.Warn("cannot read the last good config", "dir", dir, "err", err.Error())
		return l
	}
	for path, err := range unreadable {
		log.Warn("cannot read a last good config file", "file", path, "err", err.Error())
	}
	for path, data := range files {
		l.content[filepath.Join(configDir, filepath.Base(path))] = data
	}
	return l
}

// snapshot is the store loaded as the config directory's files would be:
// the snapshot to reload over at start. Nil when the store is empty.
func (l *lastGood) snapshot() *config.Snapshot {
	if len(l.content) == 0 {
		return nil
	}
	var loader config.Loader
	snap, _, rejected := loader.Reload(nil, l.content, nil)
	for _, r := range rejected {
		// Stored only when it loaded, so rejected now by a stricter
		// build: it gives no last good version.
		l.log.Warn("a last good config document no longer loads", "source", r.Source, "err", r.Err.Error())
	}
	return snap
}

// save records the outcome of a load of files: each file with nothing
// rejected becomes its last good content; a file with a rejection, or
// unreadable, keeps what the store has; a file no longer in the directory
// leaves the store.
func (l *lastGood) save(files map[string][]byte, unreadable map[string]error, rejected []*config.SourceError) {
	bad := map[string]bool{}
	for _, r := range rejected {
		bad[r.File()] = true
	}
	for path, data := range files {
		if bad[path] || bytes.Equal(l.content[path], data) {
			continue
		}
		if err := l.write(path, data); err != nil {
			l.log.Warn("cannot keep a file's last good config", "file", path, "err", err.Error())
			continue
		}
		l.content[path] = data
	}
	for path := range l.content {
		if _, ok := files[path]; ok {
			continue
		}
		if _, ok := unreadable[path]; ok {
			continue
		}
		if err := os.Remove(l.stored(path)); err != nil && !os.IsNotExist(err) {
			l.log.Warn("cannot drop a removed file's last good config", "file", path, "err", err.Error())
			continue
		}
		delete(l.content, path)
	}
}

// stored is where the store keeps the config file at path.
func (l *lastGood) stored(path string) string {
	return filepath.Join(l.dir, filepath.Base(path))
}

// write replaces the stored copy of path atomically (0600), so that a
// crash never leaves half a file to start from.
func (l *lastGood) write(path string, data []byte) error {
	f, err := os.CreateTemp(l.dir, ".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, l.stored(path))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("filesource: %w", err)
	}
	return nil
}
