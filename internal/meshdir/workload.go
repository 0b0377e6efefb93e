// Package meshdir reads the zmesh.dev documents of a mesh directory: the
// Workloads `zmesh up` starts (an app behind its proxy, or a gateway). It
// is the one parser of them, shared by the local mesh and the analyzer,
// so that both accept and refuse the same documents.
package meshdir

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/zmesh/zmesh/internal/boundedio"
	"github.com/zmesh/zmesh/internal/config"
)

// Workload is one `zmesh.dev/v1alpha1` Workload: an app the local mesh
// starts behind its own proxy.
type Workload struct {
	Name           string
	Namespace      string
	ServiceAccount string
	Labels         map[string]string
	// Annotations are the document's metadata.annotations (Istio's
	// sidecar.istio.io/... and the like, read by the analyzer).
	Annotations map[string]string
	Services    []string
	Command     []string
	// Gateway, when set, makes the workload a gateway (`zmesh proxy
	// --gateway`, Istio's ingress or egress gateway): a proxy with no
	// app, so Command must be empty.
	Gateway *GatewaySpec
}

// GatewaySpec is what a gateway workload's proxy serves.
type GatewaySpec struct {
	// Ports maps a Gateway server port to the address it is served at
	// (--gateway-port PORT=HOST:PORT); other ports are served at
	// 127.0.0.1:PORT, except privileged ones (not served).
	Ports map[uint32]string
	// CredentialDir holds the credentialNames' files (--credential-dir),
	// relative to the mesh directory; "" for none.
	CredentialDir string
	// CertFileDirs are the directories a Gateway's serverCertificate,
	// privateKey, caCertificates and caCrl files may be read from
	// (--cert-file-dir), relative to the mesh directory; none: such
	// files are refused.
	CertFileDirs []string
}

// Key returns "NAMESPACE/NAME".
func (w Workload) Key() string { return w.Namespace + "/" + w.Name }

type workloadDoc struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name        string            `json:"name"`
		Namespace   string            `json:"namespace"`
		Labels      map[string]string `json:"labels,omitempty"`
		Annotations map[string]string `json:"annotations,omitempty"`
	} `json:"metadata"`
	Spec struct {
		ServiceAccount string            `json:"serviceAccount"`
		Labels         map[string]string `json:"labels"`
		Services       []string          `json:"services"`
		Command        []string          `json:"command"`
		Gateway        *struct {
			Ports         map[string]string `json:"ports"`
			CredentialDir string            `json:"credentialDir"`
			CertFileDirs  []string          `json:"certFileDirs"`
		} `json:"gateway"`
	} `json:"spec"`
}

const workloadAPIVersion = "zmesh.dev/v1alpha1"

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// MaxFileSize bounds what ReadFiles reads from one file.
const MaxFileSize = 4 << 20

// File is one YAML file of a mesh directory.
type File struct {
	Path string
	Data []byte
}

// ReadFiles reads the YAML files of dir that `zmesh up` reads (*.yaml,
// *.yml, not hidden), in name order, each at most MaxFileSize bytes: the
// one listing of a mesh directory, for its Workloads (Load) and for the
// Istio resources `zmesh up --kubeconfig` applies.
func ReadFiles(dir string) ([]File, error) {
	var paths []string
	for _, pat := range []string{"*.yaml", "*.yml"} {
		m, err := filepath.Glob(filepath.Join(dir, pat))
		if err != nil {
			return nil, err
		}
		paths = append(paths, m...)
	}
	sort.Strings(paths)
	var out []File
	for _, p := range paths {
		if strings.HasPrefix(filepath.Base(p), ".") {
			continue
		}
		data, err := boundedio.ReadFile(p, MaxFileSize)
		if err != nil {
			return nil, fmt.Errorf("meshdir: %w", err)
		}
		out = append(out, File{Path: p, Data: data})
	}
	return out, nil
}

// Load reads every zmesh.dev Workload in the YAML files of dir.
// Documents of other groups are ignored (they are the control plane's).
// Unknown fields, duplicates and invalid names are errors.
func Load(dir string) ([]Workload, error) {
	files, err := ReadFiles(dir)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []Workload
	for _, file := range files {
		f, data := file.Path, file.Data
		ws, err := Parse(data, f)
		if err != nil {
			return nil, err
		}
		for _, w := range ws {
			if seen[w.Key()] {
				return nil, fmt.Errorf("meshdir: %s: workload %s declared twice", f, w.Key())
			}
			seen[w.Key()] = true
			out = append(out, w)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("meshdir: no %s Workload found in %s", workloadAPIVersion, dir)
	}
	return out, nil
}

// Parse reads the zmesh.dev Workloads of one YAML stream named source
// (for errors); other documents are skipped.
func Parse(data []byte, source string) ([]Workload, error) {
	var out []Workload
	for i, doc := range config.SplitDocuments(data) {
		w, ok, err := ParseDocument(doc)
		if err != nil {
			return nil, fmt.Errorf("meshdir: %s document %d: %w", source, i, err)
		}
		if ok {
			out = append(out, w)
		}
	}
	return out, nil
}

// ParseDocument reads one YAML (or JSON) document: ok is false, with no
// error, for a document of another group; a zmesh.dev document of another
// kind, with an unknown field or an invalid value is an error.
func ParseDocument(doc []byte) (w Workload, ok bool, err error) {
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := yaml.Unmarshal(doc, &head); err != nil {
		return Workload{}, false, err
	}
	if !strings.HasPrefix(head.APIVersion, "zmesh.dev/") {
		return Workload{}, false, nil
	}
	if head.APIVersion != workloadAPIVersion || head.Kind != "Workload" {
		return Workload{}, false, fmt.Errorf("unknown zmesh kind %s %s", head.APIVersion, head.Kind)
	}
	var d workloadDoc
	if err := yaml.UnmarshalStrict(doc, &d); err != nil {
		return Workload{}, false, err
	}
	w = Workload{
		Name:           d.Metadata.Name,
		Namespace:      d.Metadata.Namespace,
		ServiceAccount: d.Spec.ServiceAccount,
		Labels:         d.Spec.Labels,
		Annotations:    d.Metadata.Annotations,
		Services:       d.Spec.Services,
		Command:        d.Spec.Command,
	}
	if g := d.Spec.Gateway; g != nil {
		w.Gateway = &GatewaySpec{CredentialDir: g.CredentialDir}
		for _, d := range g.CertFileDirs {
			if d == "" {
				return Workload{}, false, errors.New("gateway certFileDirs: an empty directory")
			}
			w.Gateway.CertFileDirs = append(w.Gateway.CertFileDirs, d)
		}
		for port, addr := range g.Ports {
			n, err := strconv.ParseUint(port, 10, 16)
			if err != nil || n == 0 {
				return Workload{}, false, fmt.Errorf("gateway port %q is not a port number", port)
			}
			if _, _, err := net.SplitHostPort(addr); err != nil {
				return Workload{}, false, fmt.Errorf("gateway port %s: %q is not HOST:PORT", port, addr)
			}
			if w.Gateway.Ports == nil {
				w.Gateway.Ports = map[uint32]string{}
			}
			w.Gateway.Ports[uint32(n)] = addr
		}
	}
	if w.Namespace == "" {
		w.Namespace = "default"
	}
	if w.ServiceAccount == "" {
		w.ServiceAccount = "default"
	}
	if err := w.validate(); err != nil {
		return Workload{}, false, err
	}
	return w, true, nil
}

func (w Workload) validate() error {
	for what, v := range map[string]string{"name": w.Name, "namespace": w.Namespace, "serviceAccount": w.ServiceAccount} {
		if !dnsLabel.MatchString(v) {
			return fmt.Errorf("workload %q: %s %q is not a DNS label", w.Name, what, v)
		}
	}
	for _, s := range w.Services {
		if !dnsLabel.MatchString(s) {
			return fmt.Errorf("workload %s: service %q is not a DNS label", w.Key(), s)
		}
	}
	if w.Gateway != nil {
		if len(w.Command) > 0 {
			return errors.New("workload " + w.Key() + ": a gateway runs no app: no spec.command")
		}
		return nil
	}
	if len(w.Command) == 0 {
		return errors.New("workload " + w.Key() + ": spec.command is required")
	}
	return nil
}
