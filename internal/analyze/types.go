package analyze

// Istio's message types that zmesh reports, with istioctl's codes, levels
// and templates (pkg/config/analysis/msg of istio/istio).
var (
	Deprecated = Type{Code: "IST0002", Level: Warning, Name: "Deprecated",
		Template: "Deprecated: %s",
		Why:      "a field the schema marks deprecated is set, or a removed resource type is used"}
	ReferencedResourceNotFound = Type{Code: "IST0101", Level: Error, Name: "ReferencedResourceNotFound",
		Template: "Referenced %s not found: %q",
		Why:      "a namespace, service, selector, host or extension provider named by a resource does not exist"}
	NamespaceNotInjected = Type{Code: "IST0102", Level: Info, Name: "NamespaceNotInjected",
		Template: "The namespace is not enabled for Istio injection. Run 'kubectl label namespace %s istio-injection=enabled' to enable it, or 'kubectl label namespace %s istio-injection=disabled' to explicitly mark it as not needing injection.",
		Why:      "Namespace documents and cluster namespaces only: every workload of the local mesh has a proxy"}
	SchemaValidationError = Type{Code: "IST0106", Level: Error, Name: "SchemaValidationError",
		Template: "Schema validation error: %v",
		Why:      "the control plane rejects the resource (parse or validation error, a name defined twice) and keeps its last good version"}
	ConflictingMeshGatewayVirtualServiceHosts = Type{Code: "IST0109", Level: Error, Name: "ConflictingMeshGatewayVirtualServiceHosts",
		Template: "The VirtualServices %s associated with mesh gateway define the same host %s which can lead to undefined behavior. This can be fixed by merging the conflicting VirtualServices into a single resource.",
		Why:      "a proxy takes one VirtualService per host (its own namespace's, else the first by namespace and name) and ignores the others"}
	ConflictingSidecarWorkloadSelectors = Type{Code: "IST0110", Level: Error, Name: "ConflictingSidecarWorkloadSelectors",
		Template: "The Sidecars %v in namespace %q select the same workload pod %q, which can lead to undefined behavior.",
		Why:      "a proxy takes one Sidecar (zmesh the first by name, Istio the oldest) and ignores the others that select it; the workload named is a Pod, a Deployment's pod template, a zmesh.dev Workload or a WorkloadEntry"}
	MultipleSidecarsWithoutWorkloadSelectors = Type{Code: "IST0111", Level: Error, Name: "MultipleSidecarsWithoutWorkloadSelectors",
		Template: "The Sidecars %v in namespace %q have no workload selector, which can lead to undefined behavior.",
		Why:      "one Sidecar without a selector governs a namespace; of several, one applies (the first by name) and the others are ignored"}
	VirtualServiceDestinationPortSelectorRequired = Type{Code: "IST0112", Level: Error, Name: "VirtualServiceDestinationPortSelectorRequired",
		Template: "This VirtualService routes to a service %q that exposes multiple ports %v. Specifying a port in the destination is required to disambiguate.",
		Why:      "without a port a proxy sends to the destination on the port the request came in on; against ServiceEntries and Kubernetes Services, found as Istio finds them"}
	MisplacedAnnotation = Type{Code: "IST0107", Level: Warning, Name: "MisplacedAnnotation",
		Template: "Misplaced annotation: %s can only be applied to %s"}
	UnknownAnnotation = Type{Code: "IST0108", Level: Warning, Name: "UnknownAnnotation",
		Template: "Unknown annotation: %s"}
	DeploymentAssociatedToMultipleServices = Type{Code: "IST0116", Level: Warning, Name: "DeploymentAssociatedToMultipleServices",
		Template: "This deployment %s is associated with multiple services using port %d but different protocols: %v",
		Why:      "Deployments from files only; a proxy serves one protocol per port"}
	PortNameIsNotUnderNamingConvention = Type{Code: "IST0118", Level: Info, Name: "PortNameIsNotUnderNamingConvention",
		Template: "Port name %s (port: %d, targetPort: %s) doesn't follow the naming convention of Istio port."}
	NamespaceMultipleInjectionLabels = Type{Code: "IST0123", Level: Warning, Name: "NamespaceMultipleInjectionLabels",
		Template: "The namespace has more than one type of injection labels %v, which may lead to undefined behavior. Make sure only one injection label exists."}
	NoMatchingWorkloadsFound = Type{Code: "IST0127", Level: Warning, Name: "NoMatchingWorkloadsFound",
		Template: "No matching workloads for this resource with the following labels: %s",
		Why:      "against the workloads known: zmesh.dev Workloads, WorkloadEntries, Pods (files), or the cluster's"}
	NoServerCertificateVerificationDestinationLevel = Type{Code: "IST0128", Level: Warning, Name: "NoServerCertificateVerificationDestinationLevel",
		Template: "DestinationRule %s in namespace %s has TLS mode set to %s but no caCertificates are set to validate server identity for host: %s"}
	NoServerCertificateVerificationPortLevel = Type{Code: "IST0129", Level: Warning, Name: "NoServerCertificateVerificationPortLevel",
		Template: "DestinationRule %s in namespace %s has TLS mode set to %s but no caCertificates are set to validate server identity for host: %s at port %s"}
	VirtualServiceUnreachableRule = Type{Code: "IST0130", Level: Warning, Name: "VirtualServiceUnreachableRule",
		Template: "VirtualService rule %v not used (%s).",
		Why:      "a proxy takes the first route a request matches: a route behind a match-less one, or whose matches all repeat earlier ones, gets no traffic"}
	VirtualServiceIneffectiveMatch = Type{Code: "IST0131", Level: Info, Name: "VirtualServiceIneffectiveMatch",
		Template: "VirtualService rule %v match %v is not used (duplicate/overlapping match in rule %v).",
		Why:      "a match equal to an earlier one, or (HTTP) whose uri prefix an earlier match covers by Istio's string test, takes no traffic"}
	DeploymentConflictingPorts = Type{Code: "IST0137", Level: Warning, Name: "DeploymentConflictingPorts",
		Template: "This deployment %s is associated with multiple services %v using targetPort %q but different ports: %v.",
		Why:      "Deployments from files only; a connection to the targetPort cannot tell which service it is for"}
	SchemaWarning = Type{Code: "IST0133", Level: Warning, Name: "SchemaWarning",
		Template: "Schema validation warning: %v"}
	ServiceEntryAddressesRequired = Type{Code: "IST0134", Level: Warning, Name: "ServiceEntryAddressesRequired",
		Template: "ServiceEntry addresses are required for this protocol."}
	DeprecatedAnnotation = Type{Code: "IST0135", Level: Info, Name: "DeprecatedAnnotation",
		Template: "Annotation %q has been deprecated%s and may not work in future Istio versions."}
	AlphaAnnotation = Type{Code: "IST0136", Level: Info, Name: "AlphaAnnotation",
		Template: "Annotation %q is part of an alpha-phase feature and may be incompletely supported."}
	InvalidApplicationUID = Type{Code: "IST0144", Level: Warning, Name: "InvalidApplicationUID",
		Template: "User ID (UID) 1337 is reserved for the sidecar proxy.",
		Why:      "capture lets the proxy's user's traffic out unredirected, so the app's would bypass mTLS and policy; Pods and Deployments from files (a cluster's Pods are not read for it yet)"}
	ExternalNameServiceTypeInvalidPortName = Type{Code: "IST0150", Level: Warning, Name: "ExternalNameServiceTypeInvalidPortName",
		Template: "Port name for ExternalName service is invalid. Proxy may prevent tcp named ports and unmatched traffic for ports serving TCP protocol from being forwarded correctly",
		Why:      "an ExternalName Service has no IP: a proxy tells its TCP traffic apart only by a protocol that carries the name (TLS SNI, HTTP Host)"}
	InvalidTelemetryProvider = Type{Code: "IST0157", Level: Warning, Name: "InvalidTelemetryProvider",
		Template: "The Telemetry %v in namespace %q with empty providers will be ignored."}
	ConflictingTelemetryWorkloadSelectors = Type{Code: "IST0159", Level: Error, Name: "ConflictingTelemetryWorkloadSelectors",
		Template: "The Telemetries %v in namespace %q select the same workload pod %q, which can lead to undefined behavior.",
		Why:      "a proxy takes one workload-level Telemetry (zmesh the first by name, Istio the oldest) and ignores the others"}
	MultipleTelemetriesWithoutWorkloadSelectors = Type{Code: "IST0160", Level: Error, Name: "MultipleTelemetriesWithoutWorkloadSelectors",
		Template: "The Telemetries %v in namespace %q have no workload selector, which can lead to undefined behavior.",
		Why:      "one selector-less Telemetry governs a namespace; of several, one applies (the first by name) and the others are ignored"}
	DestinationRuleSubsetNotSelectPods = Type{Code: "IST0173", Level: Error, Name: "DestinationRuleSubsetNotSelectPods",
		Template: "The Subset %s defined in the DestinationRule does not select any pods. Which may lead to 503 UH (NoHealthyUpstream).",
		Why:      "a route to the subset finds no endpoint; checked against the workloads known, of any namespace as Istio, and not for subsets naming node topology labels, which zmesh cannot know"}
	UnknownDestinationRuleHost = Type{Code: "IST0174", Level: Warning, Name: "UnknownDestinationRuleHost",
		Template: "The host %s defined in the DestinationRule does not match any services in the mesh."}
	ConflictingServiceEntryProtocol = Type{Code: "IST0177", Level: Warning, Name: "ConflictingServiceEntryProtocol",
		Template: "Multiple ServiceEntries (%s) define the same host %q and port %d with conflicting protocols (%s)."}
)

// zmesh's own message types, for what Istio accepts without a word but
// what does not do what its author meant. Codes are outside Istio's IST
// range so that they never collide with a future Istio message.
var (
	PeerAuthenticationConflict = Type{Code: "ZM0001", Level: Warning, Name: "PeerAuthenticationConflict",
		Template: "PeerAuthentications %s apply at the same scope (%s) with different settings; only %s is in force",
		Why:      "Istio takes the oldest of several policies at one level and says nothing: the other is silently ignored (zmesh takes the first by name)"}
	PeerAuthenticationRootSelector = Type{Code: "ZM0002", Level: Warning, Name: "PeerAuthenticationRootSelectorIgnored",
		Template: "A PeerAuthentication with a workload selector in the root namespace %q is ignored: only selector-less policies apply mesh-wide, and selectors match only in their own namespace",
		Why:      "Istio ignores it without a message; its author meant a mesh-wide exception"}
	AllowRuleHTTPOnTCP = Type{Code: "ZM0003", Level: Warning, Name: "AllowRuleHTTPOnTCP",
		Template: "ALLOW rule %d uses HTTP-only fields (%s) but port %d of %s is TCP: the rule never matches there",
		Why:      "on TCP traffic Istio drops an ALLOW rule that needs HTTP attributes, so the traffic it was meant to allow is denied"}
	DenyRuleHTTPOnTCP = Type{Code: "ZM0004", Level: Warning, Name: "DenyRuleHTTPOnTCP",
		Template: "%s rule %d uses HTTP-only fields (%s) but port %d of %s is TCP: there those fields are ignored and the rule matches every connection to the port",
		Why:      "on TCP traffic Istio drops the HTTP-only fields of a DENY (or AUDIT, CUSTOM) rule and keeps the rest, so it denies the whole port"}
	UnknownTrustDomain = Type{Code: "ZM0005", Level: Warning, Name: "UnknownTrustDomain",
		Template: "%s[%d] %q names trust domain %q, which is neither the mesh's (%q) nor one of its aliases: no peer can present it",
		Why:      "proxies verify peers only against the bundles of the mesh's trust domain and its aliases, so such a value never matches"}
	ServiceEntryAddressConflict = Type{Code: "ZM0006", Level: Error, Name: "ServiceEntryAddressConflict",
		Template: "The control plane leaves this ServiceEntry out (proxies would refuse it): %v",
		Why:      "the same check as the control plane's (registry.Admit): an endpoint at another identity's address would make every proxy refuse every push"}
	DenyPathBypassable = Type{Code: "ZM0007", Level: Warning, Name: "DenyPathBypassable",
		Template: "%s rule %d matches paths (%s) while pathNormalization is %s: a request for %s reaches the workload unmatched; set pathNormalization to MERGE_SLASHES or DECODE_AND_MERGE_SLASHES",
		Why:      "Istio's security best practices: with BASE or NONE, //admin (and under NONE /x/../admin) do not match a DENY on /admin"}
	NotEnforced = Type{Code: "ZM0010", Level: Info, Name: "NotEnforced",
		Template: "zmesh does not apply %s resources: analyzed, not enforced",
		Why:      "a resource of a kind zmesh skips has no effect on a zmesh mesh"}
	InvalidPolicy = Type{Code: "ZM0009", Level: Error, Name: "PolicyNotCompiled",
		Template: "Proxies refuse this policy: %v",
		Why:      "the policy passes schema validation but fails to compile for the workloads it selects (the proxies' own compiler), so their config is not updated"}
	TargetRefNotEnforced = Type{Code: "ZM0008", Level: Warning, Name: "TargetRefNotEnforced",
		Template: "The policy targets %s %q: Istio enforces targetRef policies at gateways and waypoints, which zmesh does not run, so it is enforced nowhere",
		Why:      "sidecars ignore targetRef policies; on a mesh without waypoints the policy silently does nothing"}
)

// Types lists every message type `zmesh analyze` can report, Istio's
// first, in code order: the README's table is made from it.
func Types() []Type {
	return []Type{
		Deprecated, ReferencedResourceNotFound, NamespaceNotInjected, SchemaValidationError,
		MisplacedAnnotation, UnknownAnnotation, ConflictingMeshGatewayVirtualServiceHosts,
		ConflictingSidecarWorkloadSelectors, MultipleSidecarsWithoutWorkloadSelectors,
		VirtualServiceDestinationPortSelectorRequired, DeploymentAssociatedToMultipleServices,
		PortNameIsNotUnderNamingConvention, NamespaceMultipleInjectionLabels, NoMatchingWorkloadsFound,
		NoServerCertificateVerificationDestinationLevel, NoServerCertificateVerificationPortLevel,
		VirtualServiceUnreachableRule, VirtualServiceIneffectiveMatch,
		SchemaWarning, ServiceEntryAddressesRequired, DeprecatedAnnotation, AlphaAnnotation,
		DeploymentConflictingPorts, InvalidApplicationUID, ConflictingGateways, ExternalNameServiceTypeInvalidPortName, InvalidTelemetryProvider,
		ConflictingTelemetryWorkloadSelectors, MultipleTelemetriesWithoutWorkloadSelectors,
		DestinationRuleSubsetNotSelectPods, UnknownDestinationRuleHost, ConflictingServiceEntryProtocol,
		PeerAuthenticationConflict, PeerAuthenticationRootSelector,
		AllowRuleHTTPOnTCP, DenyRuleHTTPOnTCP, UnknownTrustDomain, ServiceEntryAddressConflict,
		DenyPathBypassable, TargetRefNotEnforced, InvalidPolicy, NotEnforced,
	}
}
