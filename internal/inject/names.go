package inject

// Istio's label and annotation names that injection reads or writes.
const (
	// LabelInjection on a namespace: "enabled" injects its pods, "disabled"
	// never does.
	LabelInjection = "istio-injection"
	// LabelRevision on a namespace or pod selects a control plane revision.
	LabelRevision = "istio.io/rev"
	// LabelInject on a pod ("true"/"false") opts it in or out. Istio also
	// reads it as an annotation, as older charts set it there.
	LabelInject = "sidecar.istio.io/inject"
	// LabelTLSMode marks a pod whose proxy accepts Istio mTLS.
	LabelTLSMode = "security.istio.io/tlsMode"
	// LabelCanonicalName and LabelCanonicalRevision name the workload in
	// telemetry.
	LabelCanonicalName     = "service.istio.io/canonical-name"
	LabelCanonicalRevision = "service.istio.io/canonical-revision"

	// AnnotationStatus records what injection added.
	AnnotationStatus = "sidecar.istio.io/status"
	// AnnotationProxyConfig holds a ProxyConfig (YAML) for the pod's proxy.
	AnnotationProxyConfig = "proxy.istio.io/config"
	// Capture annotations, passed to the capture init container.
	AnnotationExcludeOutboundPorts    = "traffic.sidecar.istio.io/excludeOutboundPorts"
	AnnotationExcludeInboundPorts     = "traffic.sidecar.istio.io/excludeInboundPorts"
	AnnotationIncludeInboundPorts     = "traffic.sidecar.istio.io/includeInboundPorts"
	AnnotationExcludeOutboundIPRanges = "traffic.sidecar.istio.io/excludeOutboundIPRanges"
	AnnotationIncludeOutboundIPRanges = "traffic.sidecar.istio.io/includeOutboundIPRanges"
	// Capture annotations zmesh does not implement. Ignoring them would
	// capture differently from what the user asked Istio for, so a pod
	// that sets them is refused.
	AnnotationIncludeOutboundPorts = "traffic.sidecar.istio.io/includeOutboundPorts"
	AnnotationInterceptionMode     = "sidecar.istio.io/interceptionMode"
	// AnnotationRewriteAppProbers "false" leaves the app's probes as they
	// are (see probes.go).
	AnnotationRewriteAppProbers = "sidecar.istio.io/rewriteAppHTTPProbers"
)

// Names of what injection adds to a pod.
const (
	ProxyContainer   = "zmesh-proxy"
	InitContainer    = "zmesh-init"
	TokenVolume      = "istio-token"
	RootCertVolume   = "istiod-ca-cert"
	RootCertMap      = "istio-ca-root-cert"
	TokenAudience    = "istio-ca"
	TokenDir         = "/var/run/secrets/tokens"
	TokenPath        = TokenDir + "/istio-token"
	RootCertDir      = "/var/run/secrets/istio"
	RootCertPath     = RootCertDir + "/root-cert.pem"
	HealthPort       = 15021
	HealthPath       = "/healthz/ready"
	DefaultRevision  = "default"
	tokenExpiration  = 43200 // seconds, as Istio's template
	proxyStartupWait = 600   // startup probe attempts, one a second
)

// The proxy's ports in an injected pod.
const (
	// AppHealthPort is the proxy's app-health listener, where the app's
	// rewritten probes go (zmesh proxy --app-health), Istio's 15020. The
	// proxy's health listener is HealthPort (zmesh proxy --health).
	AppHealthPort = 15020
	// AdminAddr is the proxy's admin listener, on loopback only: it stops
	// the proxy and shows its configuration. Envoy's admin port.
	AdminAddr = "127.0.0.1:15000"
	// EnvAppProbers carries the app's original probes to the proxy, as
	// Istio's injector passes them to its agent.
	EnvAppProbers = "ISTIO_KUBE_APP_PROBERS"
)
