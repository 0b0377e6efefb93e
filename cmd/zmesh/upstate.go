//go:build !zmesh_dataplane

package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/zmesh/zmesh/internal/localmesh"
)

// upStateDir is where `zmesh up` records its running meshes and logs: the
// user's runtime directory, else a per-user directory under the temp dir.
func upStateDir() string {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "zmesh")
	}
	return filepath.Join(os.TempDir(), "zmesh-"+strconv.Itoa(os.Getuid()))
}

// findUpState returns the state of the most recently started `zmesh up`
// still running (one state file per process: up-PID.json), or an error
// that says what to pass instead.
func findUpState() (*localmesh.State, error) {
	return findUpStateWhere(nil, "")
}

// findUpStateWhere is findUpState among the meshes for which keep (nil:
// any) holds; what names them in the error when none does.
func findUpStateWhere(keep func(*localmesh.State) bool, what string) (*localmesh.State, error) {
	dir := upStateDir()
	paths, _ := filepath.Glob(filepath.Join(dir, "up-*.json"))
	type found struct {
		st   *localmesh.State
		path string
		mod  int64
	}
	var live []found
	for _, p := range paths {
		st, err := localmesh.ReadState(p)
		if err != nil || !processAlive(st.PID) {
			continue // a mesh killed before it could clean up
		}
		if keep != nil && !keep(st) {
			continue
		}
		info, err := os.Stat(p)
		if err != nil {
			continue
		}
		live = append(live, found{st, p, info.ModTime().UnixNano()})
	}
	if len(live) == 0 {
		return nil, fmt.Errorf("no running `zmesh up`%s found (looked in %s)", what, dir)
	}
	sort.Slice(live, func(i, j int) bool { return live[i].mod > live[j].mod })
	return live[0].st, nil
}

// processAlive reports whether a process with pid exists.
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// pruneUpLogs removes the logs of `zmesh up` runs that are no longer
// running, keeping the newest few for a look after the fact.
func pruneUpLogs(dir string, keep int) {
	logs, _ := filepath.Glob(filepath.Join(dir, "up-*.log"))
	type entry struct {
		path string
		mod  int64
	}
	var dead []entry
	for _, l := range logs {
		pid, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(filepath.Base(l), "up-"), ".log"))
		if err != nil || processAlive(pid) {
			continue
		}
		if info, err := os.Stat(l); err == nil {
			dead = append(dead, entry{l, info.ModTime().UnixNano()})
		}
	}
	sort.Slice(dead, func(i, j int) bool { return dead[i].mod > dead[j].mod })
	for i, e := range dead {
		if i >= keep {
			os.Remove(e.path)
		}
	}
}
