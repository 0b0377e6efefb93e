package podnet

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// State is what one run created on the host, written before it creates
// anything, so that whatever a killed run left can be found and removed.
type State struct {
	PID       int      `json:"pid"`
	StartTime uint64   `json:"startTime"` // the owner's start time (/proc/PID/stat), against PID reuse
	Bridge    string   `json:"bridge"`
	NetNS     []string `json:"netns"`
	Veths     []string `json:"veths"`
}

// maxStateSize bounds what ParseState reads.
const maxStateSize = 1 << 20

// ParseState parses a state file. Names must be plain (no path
// separators), since Destroy builds paths from them.
func ParseState(b []byte) (State, error) {
	var s State
	if len(b) > maxStateSize {
		return s, errors.New("podnet: state file too large")
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("podnet: state file: %w", err)
	}
	for _, n := range append(append([]string{s.Bridge}, s.NetNS...), s.Veths...) {
		if n == "" || n == "." || n == ".." || strings.ContainsAny(n, "/\x00") || len(n) > 255 {
			return State{}, fmt.Errorf("podnet: state file: bad name %q", n)
		}
	}
	return s, nil
}

func statePath(cfg Config) string { return filepath.Join(cfg.StateDir, cfg.Prefix+".json") }

func writeState(cfg Config, s State) error {
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("podnet: state dir: %w", err)
	}
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	tmp := statePath(cfg) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("podnet: write state: %w", err)
	}
	return os.Rename(tmp, statePath(cfg))
}

// processStartTime returns field 22 of /proc/PID/stat (clock ticks since
// boot), which tells a process from a later one given the same PID.
func processStartTime(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, errors.New("podnet: malformed /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, errors.New("podnet: malformed /proc stat")
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// alive reports whether the process that wrote s still runs.
func (s State) alive() bool {
	if s.PID <= 0 {
		return false
	}
	st, err := processStartTime(s.PID)
	return err == nil && st == s.StartTime
}
