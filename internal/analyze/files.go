package analyze

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/meshdir"
)

// FromFiles builds an Input from YAML inputs (name -> contents), as the
// control plane would read a config directory: the Istio resources it
// applies go through config.Reload (what it would refuse lands in
// Rejected), and the documents it skips are read here for what they tell
// about the mesh: Namespaces, Services, Pods and the pod templates of
// Deployments, StatefulSets and DaemonSets, zmesh.dev Workloads (the local
// mesh's), and Istio kinds zmesh does not apply (Others). Documents of
// other kinds are ignored. FromFiles does no I/O.
func FromFiles(files map[string][]byte) Input {
	snap, warnings, rejected := config.Reload(nil, files, nil)
	in := Input{Snapshot: snap, Rejected: rejected}
	for _, w := range warnings {
		if strings.Contains(w.Message, "not a kind zmesh understands") {
			continue // reported as ZM0010 from Others
		}
		in.Warnings = append(in.Warnings, w)
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		data := files[name]
		if len(data) > config.MaxInputSize {
			continue // config.Reload rejected it whole
		}
		n := 0
		for _, doc := range config.SplitDocuments(data) {
			js, err := yaml.YAMLToJSON(doc)
			if err != nil {
				n++
				continue // config.Reload rejected it
			}
			if t := bytes.TrimSpace(js); len(t) == 0 || bytes.Equal(t, []byte("null")) {
				continue
			}
			n++
			in.addDocument(js, name+"#"+strconv.Itoa(n), true)
		}
	}
	return in
}

// envelope is the Kubernetes object around a spec.
type envelope struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name        string            `json:"name"`
		Namespace   string            `json:"namespace"`
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	Spec  json.RawMessage   `json:"spec"`
	Items []json.RawMessage `json:"items"`
}

// istioGroups are the API groups of Istio's resources; a kind of theirs
// that config does not parse is one zmesh does not apply.
var istioGroups = []string{"security.istio.io", "networking.istio.io", "telemetry.istio.io", "extensions.istio.io", "rbac.istio.io", "authentication.istio.io", "config.istio.io"}

func (in *Input) addDocument(js []byte, src string, allowList bool) {
	var e envelope
	if json.Unmarshal(js, &e) != nil || e.Kind == "" {
		return // config.Reload reports it, or it is not an object
	}
	group, _, hasGroup := strings.Cut(e.APIVersion, "/")
	if !hasGroup {
		group = ""
	}
	ns := e.Metadata.Namespace
	if ns == "" {
		ns = config.DefaultNamespace
	}
	m := e.Metadata
	switch {
	case allowList && e.APIVersion == "v1" && e.Kind == "List":
		for i, item := range e.Items {
			if i >= 10000 {
				break
			}
			in.addDocument(item, fmt.Sprintf("%s.items[%d]", src, i), false)
		}
	case group == "" && e.Kind == "Namespace":
		in.Namespaces = append(in.Namespaces, Namespace{Name: m.Name, Labels: m.Labels, Annotations: m.Annotations, Source: src, Declared: true})
	case group == "" && e.Kind == "Service":
		in.addService(e, ns, src)
	case group == "" && e.Kind == "Pod":
		var spec podSpec
		_ = json.Unmarshal(orNull(e.Spec), &spec)
		in.Workloads = append(in.Workloads, Workload{Kind: "Pod", Name: m.Name, Namespace: ns, Labels: m.Labels, Annotations: m.Annotations, ServiceAccount: spec.ServiceAccountName, Source: src,
			ProxyContainer: hasProxyContainer(append(spec.Containers, spec.InitContainers...)), RunAsUsers: spec.runAsUsers()})
	case group == "apps" && (e.Kind == "Deployment" || e.Kind == "StatefulSet" || e.Kind == "DaemonSet"):
		var spec struct {
			Template struct {
				Metadata struct {
					Labels      map[string]string `json:"labels"`
					Annotations map[string]string `json:"annotations"`
				} `json:"metadata"`
				Spec podSpec `json:"spec"`
			} `json:"template"`
		}
		_ = json.Unmarshal(orNull(e.Spec), &spec)
		t := spec.Template
		in.Workloads = append(in.Workloads, Workload{Kind: e.Kind, Name: m.Name, Namespace: ns, Labels: t.Metadata.Labels, Annotations: t.Metadata.Annotations,
			ServiceAccount: t.Spec.ServiceAccountName, Source: src, OwnerLabels: m.Labels, ProxyContainer: hasProxyContainer(t.Spec.Containers),
			RunAsUsers: t.Spec.runAsUsers()})
	case group == "zmesh.dev" || strings.HasSuffix(group, ".zmesh.dev"):
		w, err := workloadOf(js)
		if err != nil {
			in.Rejected = append(in.Rejected, &config.SourceError{Source: src, Kind: config.Kind(e.Kind), Key: keyOf(e, ns), Err: err})
			return
		}
		w.Source = src
		in.Workloads = append(in.Workloads, w)
	case isIstioGroup(group):
		if isKnownByConfig(e.APIVersion, e.Kind) {
			return // in Snapshot, or in Rejected
		}
		o := Object{APIVersion: e.APIVersion, Kind: e.Kind, Name: m.Name, Namespace: ns, Labels: m.Labels, Annotations: m.Annotations, Source: src}
		if len(e.Spec) > 0 {
			o.Spec = e.Spec
		}
		in.Others = append(in.Others, o)
	}
}

// podSpec is what the analyzers read of a pod's spec.
type podSpec struct {
	ServiceAccountName string           `json:"serviceAccountName"`
	SecurityContext    *securityContext `json:"securityContext"`
	Containers         []container      `json:"containers"`
	InitContainers     []container      `json:"initContainers"`
}

// container is what the analyzers read of a pod's container.
type container struct {
	Name            string           `json:"name"`
	Image           string           `json:"image"`
	SecurityContext *securityContext `json:"securityContext"`
}

type securityContext struct {
	RunAsUser *int64 `json:"runAsUser"`
}

// runAsUsers returns the pod's runAsUser and its containers', those of
// Istio's proxy and operator containers aside (Workload.RunAsUsers).
func (p podSpec) runAsUsers() []int64 {
	var out []int64
	if u := p.SecurityContext; u != nil && u.RunAsUser != nil {
		out = append(out, *u.RunAsUser)
	}
	for _, c := range p.Containers {
		if c.Name == "istio-proxy" || c.Name == "istio-operator" {
			continue
		}
		if u := c.SecurityContext; u != nil && u.RunAsUser != nil {
			out = append(out, *u.RunAsUser)
		}
	}
	return out
}

// hasProxyContainer reports whether cs has Istio's proxy container, named
// istio-proxy, with an image (its first of that name, as Istio reads it).
func hasProxyContainer(cs []container) bool {
	for _, c := range cs {
		if c.Name == "istio-proxy" {
			return c.Image != ""
		}
	}
	return false
}

// isKnownByConfig reports whether config parses apiVersion/kind, by asking
// it to parse a minimal document of that kind: Parse warns about kinds it
// skips.
func isKnownByConfig(apiVersion, kind string) bool {
	doc := fmt.Sprintf(`{"apiVersion":%q,"kind":%q,"metadata":{"name":"x"}}`, apiVersion, kind)
	_, warnings, _ := config.Parse([]byte(doc), "probe")
	return len(warnings) == 0
}

func isIstioGroup(group string) bool {
	for _, g := range istioGroups {
		if group == g {
			return true
		}
	}
	return false
}

func keyOf(e envelope, ns string) string {
	if e.Metadata.Name == "" {
		return ""
	}
	return ns + "/" + e.Metadata.Name
}

func orNull(js json.RawMessage) []byte {
	if len(js) == 0 {
		return []byte("null")
	}
	return js
}

func (in *Input) addService(e envelope, ns, src string) {
	var spec struct {
		Type     string            `json:"type"`
		Selector map[string]string `json:"selector"`
		Ports    []struct {
			Name        string          `json:"name"`
			Port        int32           `json:"port"`
			TargetPort  json.RawMessage `json:"targetPort"`
			Protocol    string          `json:"protocol"`
			AppProtocol *string         `json:"appProtocol"`
		} `json:"ports"`
	}
	_ = json.Unmarshal(orNull(e.Spec), &spec)
	s := Service{Name: e.Metadata.Name, Namespace: ns, Labels: e.Metadata.Labels, Annotations: e.Metadata.Annotations,
		Type: spec.Type, Selector: spec.Selector, Source: src}
	for _, p := range spec.Ports {
		sp := ServicePort{Name: p.Name, Port: p.Port, Protocol: p.Protocol, TargetPort: targetPort(p.TargetPort)}
		if p.AppProtocol != nil {
			sp.AppProtocol = *p.AppProtocol
		}
		s.Ports = append(s.Ports, sp)
	}
	in.Services = append(in.Services, s)
}

// targetPort returns a Service port's targetPort as written (a number or
// a name); "" when unset.
func targetPort(js json.RawMessage) string {
	if len(js) == 0 {
		return ""
	}
	var n int64
	if json.Unmarshal(js, &n) == nil {
		return strconv.FormatInt(n, 10)
	}
	var s string
	if json.Unmarshal(js, &s) == nil {
		return s
	}
	return ""
}

// workloadOf reads a zmesh.dev document with the parser `zmesh up` uses
// (meshdir), so the analyzer accepts and refuses exactly what the local
// mesh does.
func workloadOf(js []byte) (Workload, error) {
	w, ok, err := meshdir.ParseDocument(js)
	if err != nil {
		return Workload{}, err
	}
	if !ok {
		return Workload{}, errors.New("not a zmesh.dev document")
	}
	return Workload{Kind: "Workload", Name: w.Name, Namespace: w.Namespace, Labels: w.Labels,
		Annotations: w.Annotations, ServiceAccount: w.ServiceAccount, Services: w.Services}, nil
}
