package localmesh

import (
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// State is what a running `zmesh up` records in Config.StateFile, so that
// other commands (`zmesh proxy-status`, `zmesh describe`) find its control
// plane and proxies without being told their ports.
type State struct {
	PID               int    `json:"pid"`
	ControlPlaneGRPC  string `json:"controlplaneGrpc"`
	ControlPlaneAdmin string `json:"controlplaneAdmin"`
	DataDir           string `json:"dataDir"`
	MeshDir           string `json:"meshDir"`
	LogFile           string `json:"logFile,omitempty"`
	// Kubeconfig is the cluster's kubeconfig file in Kubernetes mode.
	Kubeconfig string          `json:"kubeconfig,omitempty"`
	Workloads  []StateWorkload `json:"workloads"`
}

// StateWorkload is one workload's addresses.
type StateWorkload struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace"`
	Labels    map[string]string `json:"labels,omitempty"`
	App       string            `json:"app"`
	Inbound   string            `json:"inbound"`
	Outbound  string            `json:"outbound"`
	Admin     string            `json:"admin"`
}

// ReadState reads a state file written by a `zmesh up`.
func ReadState(path string) (*State, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var st State
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("localmesh: state %s: %w", path, err)
	}
	return &st, nil
}

// writeState writes st to path atomically (0600: it names local ports
// and the data directory).
func writeState(path string, st *State) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Unpack writes the YAML files at the root of fsys into dir, for running
// a mesh embedded in the binary (examples.Quickstart) as a directory the
// control plane watches and the user may edit.
func Unpack(fsys fs.FS, dir string) error {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() || !(strings.HasSuffix(e.Name(), ".yaml") || strings.HasSuffix(e.Name(), ".yml")) {
			continue
		}
		data, err := fs.ReadFile(fsys, e.Name())
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// writeHints prints, after `zmesh: ready`, commands a newcomer can paste
// to try the mesh: a call through the mesh from the first `zmesh echo` app to
// the services of the other workloads, the tools that find this mesh by
// its state file, and where the logs are.
func writeHints(w io.Writer, cfg Config, dir string, members []member) {
	var b strings.Builder
	b.WriteString("\nTry it (Ctrl-C stops the mesh):\n")
	var callers []member // the first `zmesh echo` app calls the others
	for _, m := range members {
		if len(m.Command) > 1 && m.Command[0] == "zmesh" && m.Command[1] == "echo" {
			callers = append(callers, m)
			break
		}
	}
	for _, c := range callers {
		for _, m := range members {
			if m.Key() == c.Key() {
				continue
			}
			for _, s := range m.Services {
				fmt.Fprintf(&b, "  curl http://%s/call/%s.%s.svc.cluster.local/   # %s calls %s through the mesh\n", c.app, s, m.Namespace, c.Key(), m.Key())
			}
		}
	}
	if len(members) > 0 {
		m := members[0]
		fmt.Fprintf(&b, "  curl -s http://%s/metrics | grep istio_requests_total\n", m.admin)
		fmt.Fprintf(&b, "  zmesh describe workload %s\n", m.Key())
		fmt.Fprintf(&b, "  zmesh cert inspect --admin %s\n", m.admin)
	}
	b.WriteString("  zmesh proxy-status\n")
	fmt.Fprintf(&b, "  zmesh analyze -f %s\n", dir)
	if cfg.Cluster != nil {
		fmt.Fprintf(&b, "  zmesh proxy-status --kubeconfig %s\n", cfg.Cluster.Kubeconfig())
		fmt.Fprintf(&b, "Change the cluster's Istio resources while it runs (kubectl --kubeconfig %s apply -f %s/FILE.yaml): proxies apply a change within a second.\n", cfg.Cluster.Kubeconfig(), dir)
	} else {
		fmt.Fprintf(&b, "Edit %s/*.yaml while it runs: proxies apply a change within a second.\n", dir)
	}
	if cfg.LogFile != "" {
		fmt.Fprintf(&b, "Logs: tail -f %s\n", cfg.LogFile)
	}
	io.WriteString(w, b.String())
}
