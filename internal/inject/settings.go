package inject

import (
	"errors"
	"fmt"
	"net"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Settings are the injector's configuration: what the sidecar runs and
// which pods it goes to. The zero value is not usable; call Validate.
type Settings struct {
	// Image is the zmesh image, run by both added containers. Required.
	Image string
	// ImagePullPolicy defaults to IfNotPresent.
	ImagePullPolicy corev1.PullPolicy
	// ControlPlane is the host:port the proxies dial for certificates and
	// config; default zmesh.istio-system.svc:15012.
	ControlPlane string
	// TrustDomain and ClusterDomain default to cluster.local.
	TrustDomain, ClusterDomain string
	// ProxyUID and ProxyGID are the proxy's identity, which capture leaves
	// uncaptured; default 1337, Istio's. Root (0) is refused: every root
	// process in the pod would escape capture.
	ProxyUID, ProxyGID int64
	// Resources of the proxy container; default requests 100m CPU and
	// 128Mi, limit 1Gi memory.
	Resources corev1.ResourceRequirements
	// Revision is this control plane's istio.io/rev; default "default".
	Revision string
	// ExcludedNamespaces are never injected; default kube-system,
	// kube-public, kube-node-lease and istio-system. The control plane's
	// own namespace must be among them: with failurePolicy Fail its pods
	// could not start while it is down.
	ExcludedNamespaces []string
}

// DefaultImage is the image `zmesh install` and the webhook use when told
// none. Pin a version in production.
const DefaultImage = "zmesh/zmesh:latest"

// DefaultExcludedNamespaces are the namespaces Settings excludes when it
// names none.
var DefaultExcludedNamespaces = []string{"kube-system", "kube-public", "kube-node-lease", "istio-system"}

// Validate checks s and fills in defaults.
func (s *Settings) Validate() error {
	if s.Image == "" {
		return errors.New("inject: an image is required")
	}
	if s.ImagePullPolicy == "" {
		s.ImagePullPolicy = corev1.PullIfNotPresent
	}
	if s.ControlPlane == "" {
		s.ControlPlane = "zmesh.istio-system.svc:15012"
	}
	if _, port, err := net.SplitHostPort(s.ControlPlane); err != nil {
		return fmt.Errorf("inject: control plane address %q: %w", s.ControlPlane, err)
	} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("inject: control plane address %q: bad port", s.ControlPlane)
	}
	if s.TrustDomain == "" {
		s.TrustDomain = "cluster.local"
	}
	if s.ClusterDomain == "" {
		s.ClusterDomain = "cluster.local"
	}
	if s.ProxyUID == 0 {
		s.ProxyUID = 1337
	}
	if s.ProxyGID == 0 {
		s.ProxyGID = 1337
	}
	if s.ProxyUID < 0 || s.ProxyGID < 0 {
		return errors.New("inject: proxy UID and GID must be positive")
	}
	if s.Resources.Requests == nil && s.Resources.Limits == nil {
		s.Resources = corev1.ResourceRequirements{
			Requests: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse("100m"),
				corev1.ResourceMemory: resource.MustParse("128Mi"),
			},
			Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")},
		}
	}
	if s.Revision == "" {
		s.Revision = DefaultRevision
	}
	if s.ExcludedNamespaces == nil {
		s.ExcludedNamespaces = DefaultExcludedNamespaces
	}
	return nil
}
