package telemetry

import "strconv"

// Reporter values: which side of a call recorded the metric (Istio's
// `reporter` label).
const (
	ReporterSource      = "source"
	ReporterDestination = "destination"
)

// Connection security policies (Istio's `connection_security_policy` label).
const (
	SecurityMutualTLS = "mutual_tls"
	SecurityNone      = "none"
)

// Unknown is the value Istio puts in a label it cannot fill.
const Unknown = "unknown"

// requestLabelNames are Istio's label names for request metrics, in the
// order RequestLabels.values returns them.
var requestLabelNames = []string{
	"reporter",
	"source_workload",
	"source_workload_namespace",
	"source_principal",
	"destination_workload",
	"destination_workload_namespace",
	"destination_principal",
	"destination_service",
	"destination_service_name",
	"destination_service_namespace",
	"request_protocol",
	"response_code",
	"response_flags",
	"grpc_response_status",
	"connection_security_policy",
}

// tcpLabelNames are Istio's label names for TCP metrics.
var tcpLabelNames = []string{
	"reporter",
	"source_workload",
	"source_workload_namespace",
	"source_principal",
	"destination_workload",
	"destination_workload_namespace",
	"destination_principal",
	"destination_service",
	"connection_security_policy",
}

// Peer names one side of a call for metric labels. Empty fields are
// reported as "unknown".
type Peer struct {
	Workload  string // workload name, e.g. "frontend"
	Namespace string
	Principal string // the SPIFFE ID, as Istio labels it: spiffe://cluster.local/ns/web/sa/frontend
}

// RequestLabels is the label set of one HTTP request's metrics. It is a
// comparable value so that it can key the cache of label children.
type RequestLabels struct {
	Reporter         string // ReporterSource or ReporterDestination
	Source           Peer
	Destination      Peer
	Service          string // destination_service: FQDN or authority
	ServiceName      string // destination_service_name
	ServiceNamespace string // destination_service_namespace
	Protocol         string // "http" or "grpc"
	Code             int    // response_code
	Flags            string // response_flags, Envoy style ("-", "UH", "UF", "URX"...)
	GRPCStatus       string // grpc_response_status: the grpc-status code of a gRPC response, "" otherwise
	Security         string // SecurityMutualTLS or SecurityNone
}

func (l *RequestLabels) values() []string {
	return []string{
		orUnknown(l.Reporter),
		orUnknown(l.Source.Workload),
		orUnknown(l.Source.Namespace),
		orUnknown(l.Source.Principal),
		orUnknown(l.Destination.Workload),
		orUnknown(l.Destination.Namespace),
		orUnknown(l.Destination.Principal),
		orUnknown(l.Service),
		orUnknown(l.ServiceName),
		orUnknown(l.ServiceNamespace),
		orUnknown(l.Protocol),
		strconv.Itoa(l.Code),
		orDefault(l.Flags, "-"),
		l.GRPCStatus,
		orUnknown(l.Security),
	}
}

// TCPLabels is the label set of one TCP connection's metrics (CONNECT
// tunnels and other opaque streams).
type TCPLabels struct {
	Reporter    string
	Source      Peer
	Destination Peer
	Service     string
	Security    string
}

func (l *TCPLabels) values() []string {
	return []string{
		orUnknown(l.Reporter),
		orUnknown(l.Source.Workload),
		orUnknown(l.Source.Namespace),
		orUnknown(l.Source.Principal),
		orUnknown(l.Destination.Workload),
		orUnknown(l.Destination.Namespace),
		orUnknown(l.Destination.Principal),
		orUnknown(l.Service),
		orUnknown(l.Security),
	}
}

func orUnknown(s string) string { return orDefault(s, Unknown) }

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
