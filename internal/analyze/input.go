package analyze

import (
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/registry"
)

// Input is everything the analyzers look at. Snapshot and Rejected are
// what the control plane would hold and refuse; the rest is the mesh
// around them. A caller fills it from files (FromFiles) or from a cluster;
// fields it cannot know stay empty, and the analyzers that need them say
// nothing rather than guess (see each field).
type Input struct {
	// Snapshot holds the resources the control plane would accept.
	Snapshot *config.Snapshot
	// Rejected are the documents the control plane would refuse, each
	// reported as IST0106.
	Rejected []*config.SourceError
	// Warnings are the config package's warnings (Istio's validation
	// warnings), reported as IST0133.
	Warnings []config.Warning

	// Namespaces are the namespaces known to exist. From files they are the
	// Namespace documents; the namespaces every resource and workload lives
	// in, and the root namespace, are added by Analyze.
	Namespaces []Namespace
	// Services are the Kubernetes Services known (from Service documents,
	// or the cluster's).
	Services []Service
	// Workloads are the workload instances known: zmesh.dev Workloads and
	// Pods from files, or the cluster's Pods. WorkloadEntries of the
	// snapshot are added by Analyze. Without any, IST0127 is not checked:
	// every selector would match nothing.
	Workloads []Workload
	// Registered are the services the control plane's registry holds
	// besides ServiceEntries: what proxies registered, or a cluster's
	// Services and endpoints. ServiceEntries are admitted after them, as
	// the control plane admits them (ZM0006).
	Registered []registry.Service
	// Others are the documents of kinds zmesh does not apply but analyzes
	// (DestinationRule, Telemetry) or only reports as not enforced.
	Others []Object

	// Mesh is the mesh config in force (nil: Istio's defaults).
	Mesh *meshv1alpha1.MeshConfig
	// TrustDomain is the mesh's trust domain when Mesh does not set it;
	// "" means cluster.local.
	TrustDomain string
	// Cluster is set when the input is a live cluster's state rather than
	// files: namespaces without injection are then reported (IST0102).
	Cluster bool
}

// Namespace is one namespace and its labels.
type Namespace struct {
	Name        string
	Labels      map[string]string
	Annotations map[string]string
	Source      string
	// Declared is set for a namespace read from a Namespace document or
	// the cluster, as opposed to one inferred from a resource in it.
	Declared bool
}

// Service is a Kubernetes Service: what selects workloads and names ports.
type Service struct {
	Name        string
	Namespace   string
	Labels      map[string]string
	Annotations map[string]string
	Type        string            // ClusterIP, ExternalName, ...
	Selector    map[string]string // nil: no selector (endpoints managed elsewhere)
	Ports       []ServicePort
	Source      string
}

// ServicePort is one port of a Service.
type ServicePort struct {
	Name        string
	Port        int32
	TargetPort  string // number or name, as written; "" means Port
	Protocol    string // TCP, UDP, SCTP; "" means TCP
	AppProtocol string // "" when unset
}

// Workload is one workload instance.
type Workload struct {
	Kind           string // Workload (zmesh.dev), Pod, WorkloadEntry
	Name           string
	Namespace      string
	Labels         map[string]string
	Annotations    map[string]string
	ServiceAccount string
	// Services are the short names of the services a zmesh.dev Workload
	// serves in its namespace.
	Services []string
	Source   string
	// OwnerLabels are a Deployment's (StatefulSet's, DaemonSet's) own
	// labels, Labels being its pod template's.
	OwnerLabels map[string]string
	// ProxyContainer is set when the pod (template) already has a
	// container named istio-proxy with an image: Istio takes it as in the
	// mesh whatever its injection labels.
	ProxyContainer bool
	// RunAsUsers are the runAsUser values of the pod (template) and of
	// its containers other than istio-proxy and istio-operator.
	RunAsUsers []int64
}

// Object is a document of a kind zmesh does not apply.
type Object struct {
	APIVersion  string
	Kind        string
	Name        string
	Namespace   string // "" for cluster-scoped kinds
	Labels      map[string]string
	Annotations map[string]string
	Spec        []byte // the spec as JSON; nil when absent
	Source      string
}

// rootNamespace returns the mesh's root namespace.
func (in *Input) rootNamespace() string {
	if ns := in.Mesh.GetRootNamespace(); ns != "" {
		return ns
	}
	return "istio-system"
}

// trustDomain returns the mesh's trust domain.
func (in *Input) trustDomain() string {
	if td := in.Mesh.GetTrustDomain(); td != "" {
		return td
	}
	if in.TrustDomain != "" {
		return in.TrustDomain
	}
	return "cluster.local"
}
