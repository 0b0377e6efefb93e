package filesource

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/zmesh/zmesh/internal/boundedio"
	"github.com/zmesh/zmesh/internal/config"
)

// Read returns the contents of the configuration files in dir, keyed by
// their path (dir joined with the file name). It reads the regular files
// (or symlinks to them, as in a Kubernetes ConfigMap volume) named *.yaml
// or *.yml, non-recursively, skipping hidden files and editor backups. A
// file larger than config.MaxInputSize, or one that cannot be read, is an
// error, found without reading more than that.
func Read(dir string) (map[string][]byte, error) {
	files, unreadable, err := readDir(dir, nil)
	if err != nil {
		return nil, err
	}
	if len(unreadable) > 0 {
		return nil, unreadable[slices.Min(slices.Collect(maps.Keys(unreadable)))]
	}
	return files, nil
}

// readDir is Read that reports the files it could not read (too large, no
// permission) apart, by path, so that they are rejected alone. err is for
// the directory itself. Through a cache (non-nil), a file whose status
// vouches for the content read before is not read again.
func readDir(dir string, cache *fileCache) (files map[string][]byte, unreadable map[string]error, err error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("filesource: %w", err)
	}
	from, next := cache.begin()
	defer func() { cache.end(next) }()
	files, unreadable = map[string][]byte{}, map[string]error{}
	for _, e := range entries {
		if !IsConfigFile(e.Name()) {
			continue
		}
		path := filepath.Join(dir, e.Name())
		info, err := os.Stat(path) // follows symlinks
		if err != nil {
			if os.IsNotExist(err) {
				continue // removed, or a dangling link, since ReadDir
			}
			unreadable[path] = fmt.Errorf("filesource: %w", err)
			continue
		}
		if !info.Mode().IsRegular() {
			continue
		}
		if data, ok := lookup(from, path, info); ok {
			files[path] = data
			next[path] = from[path]
			continue
		}
		start := time.Now()
		data, opened, err := readBounded(path)
		if err != nil {
			unreadable[path] = err
			continue
		}
		files[path] = data
		cache.remember(next, path, opened, start, data)
	}
	return files, unreadable, nil
}

// readBounded reads the file at path, at most config.MaxInputSize bytes,
// and returns with its content its status when opened, before the read.
func readBounded(path string) ([]byte, os.FileInfo, error) {
	data, info, err := boundedio.ReadFileInfo(path, config.MaxInputSize)
	if err != nil {
		return nil, nil, fmt.Errorf("filesource: %w", err)
	}
	return data, info, nil
}

// IsConfigFile reports whether a file name is one the source reads:
// *.yaml or *.yml, not hidden (".x.yaml", also editors' swap files), and not
// an editor's backup or lock file ("x.yaml~", "#x.yaml#").
func IsConfigFile(name string) bool {
	if strings.HasPrefix(name, ".") || strings.HasPrefix(name, "#") || strings.HasSuffix(name, "~") {
		return false
	}
	ext := filepath.Ext(name)
	return ext == ".yaml" || ext == ".yml"
}

// Load reads dir once and loads it with config.Load, all or nothing: the
// one-shot form for commands such as `zmesh check` that do not watch and
// must refuse a directory they cannot take whole.
func Load(dir string) (*config.Snapshot, []config.Warning, error) {
	files, err := Read(dir)
	if err != nil {
		return nil, nil, err
	}
	return config.Load(files)
}
