package filesource

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/zmesh/zmesh/internal/config"
)

// Read returns the contents of the configuration files in dir, keyed by
// their path (dir joined with the file name). It reads the regular files
// (or symlinks to them, as in a Kubernetes ConfigMap volume) named *.yaml
// or *.yml, non-recursively, skipping hidden files and editor backups. A
// file larger than config.MaxInputSize is an error, found without reading
// more than that.
func Read(dir string) (map[string][]byte, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("filesource: %w", err)
	}
	files := map[string][]byte{}
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
			return nil, fmt.Errorf("filesource: %w", err)
		}
		if !info.Mode().IsRegular() {
			continue
		}
		data, err := readBounded(path)
		if err != nil {
			return nil, err
		}
		files[path] = data
	}
	return files, nil
}

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("filesource: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, config.MaxInputSize+1))
	if err != nil {
		return nil, fmt.Errorf("filesource: read %s: %w", path, err)
	}
	if len(data) > config.MaxInputSize {
		return nil, fmt.Errorf("filesource: %s is larger than %d bytes", path, config.MaxInputSize)
	}
	return data, nil
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

// Load reads dir once and loads it with config.Load: the one-shot form for
// commands such as `zmesh check` that do not watch.
func Load(dir string) (*config.Snapshot, []config.Warning, error) {
	files, err := Read(dir)
	if err != nil {
		return nil, nil, err
	}
	return config.Load(files)
}
