package inject

import (
	"maps"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/zmesh/zmesh/internal/registry"
)

// labels returns the pod's labels as they are after injection: the
// pod's own, plus tlsMode=istio, the tunnel label, and the canonical name
// and revision unless the pod sets them.
func (s *Settings) labels(pod *corev1.Pod) map[string]string {
	out := maps.Clone(pod.Labels)
	if out == nil {
		out = map[string]string{}
	}
	name, rev := canonical(pod)
	out[LabelTLSMode] = "istio"
	out[LabelCanonicalName] = name
	out[LabelCanonicalRevision] = rev
	// The injected proxy takes HBONE on its tunnel port: peers learn it
	// from this label, as Istio marks tunnel-capable workloads.
	out[registry.LabelTunnel] = registry.TunnelHTTP
	return out
}

// initContainer is zmesh-init: it installs the capture rules in the pod's
// network namespace and exits. It is the only part that runs as root, and
// with only the two capabilities that rules need.
func (s *Settings) initContainer(captureArgs []string) corev1.Container {
	args := []string{"capture-init"}
	if s.ProxyUID != 1337 || s.ProxyGID != 1337 {
		args = append(args, "--proxy-uid="+strconv.FormatInt(s.ProxyUID, 10), "--proxy-gid="+strconv.FormatInt(s.ProxyGID, 10))
	}
	args = append(args, captureArgs...)
	return corev1.Container{
		Name:            InitContainer,
		Image:           s.Image,
		ImagePullPolicy: s.ImagePullPolicy,
		Args:            args,
		Resources:       s.Resources,
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                ptr.To[int64](0),
			RunAsGroup:               ptr.To[int64](0),
			RunAsNonRoot:             ptr.To(false),
			Privileged:               ptr.To(false),
			AllowPrivilegeEscalation: ptr.To(false),
			ReadOnlyRootFilesystem:   ptr.To(true),
			Capabilities: &corev1.Capabilities{
				Add:  []corev1.Capability{"NET_ADMIN", "NET_RAW"},
				Drop: []corev1.Capability{"ALL"},
			},
		},
	}
}

// proxyContainer is zmesh-proxy, the native sidecar. Its startup probe
// holds the app containers back until the proxy is ready (it holds a
// certificate and its config); hold false (holdApplicationUntilProxyStarts:
// false) drops it, so the app may start first and its first connections
// fail, never bypass: capture is in place before either starts. probers,
// when not empty, is the ISTIO_KUBE_APP_PROBERS JSON of the app probes
// rewritten to the proxy's app-health port.
//
// The kubelet reaches two of the proxy's ports on the pod's IP: the health
// port (its own probes) and the app-health port (the app's), each serving
// only that. The admin port stays on loopback, where only the pod's own
// processes reach /quitquitquit and /debug/*.
func (s *Settings) proxyContainer(labels map[string]string, hold bool, probers string) corev1.Container {
	probe := func(period, failures int32) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: HealthPath, Port: intstr.FromInt32(HealthPort),
			}},
			PeriodSeconds: period, TimeoutSeconds: 3, FailureThreshold: failures,
		}
	}
	c := corev1.Container{
		Name:            ProxyContainer,
		Image:           s.Image,
		ImagePullPolicy: s.ImagePullPolicy,
		RestartPolicy:   ptr.To(corev1.ContainerRestartPolicyAlways),
		Args: []string{
			"proxy",
			"--controlplane=" + s.ControlPlane,
			"--root-cert=" + RootCertPath,
			"--token-file=" + TokenPath,
			"--name=$(POD_NAME)",
			"--namespace=$(POD_NAMESPACE)",
			"--service-account=$(SERVICE_ACCOUNT)",
			"--labels=" + joinLabels(labels),
			"--trust-domain=" + s.TrustDomain,
			"--dns-domain=" + s.ClusterDomain,
			"--inbound=0.0.0.0:15006",
			"--tunnel=0.0.0.0:" + strconv.Itoa(registry.DefaultTunnelPort),
			"--advertise=$(INSTANCE_IP):15006",
			"--outbound=127.0.0.1:15001",
			"--admin=" + AdminAddr,
			"--health=0.0.0.0:" + strconv.Itoa(HealthPort),
			"--app-health=0.0.0.0:" + strconv.Itoa(AppHealthPort),
		},
		Env: []corev1.EnvVar{
			fieldEnv("POD_NAME", "metadata.name"),
			fieldEnv("POD_NAMESPACE", "metadata.namespace"),
			fieldEnv("SERVICE_ACCOUNT", "spec.serviceAccountName"),
			fieldEnv("INSTANCE_IP", "status.podIP"),
		},
		Resources:      s.Resources,
		ReadinessProbe: probe(15, 4),
		VolumeMounts: []corev1.VolumeMount{
			{Name: TokenVolume, MountPath: TokenDir, ReadOnly: true},
			{Name: RootCertVolume, MountPath: RootCertDir, ReadOnly: true},
		},
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                ptr.To(s.ProxyUID),
			RunAsGroup:               ptr.To(s.ProxyGID),
			RunAsNonRoot:             ptr.To(true),
			Privileged:               ptr.To(false),
			AllowPrivilegeEscalation: ptr.To(false),
			ReadOnlyRootFilesystem:   ptr.To(true),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
	}
	if hold {
		c.StartupProbe = probe(1, proxyStartupWait)
	}
	if probers != "" {
		c.Env = append(c.Env, corev1.EnvVar{Name: EnvAppProbers, Value: probers})
	}
	return c
}

func fieldEnv(name, path string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{
		FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: path},
	}}
}

// volumes are the projected service-account token (audience istio-ca,
// what the CA checks with TokenReview) and the mesh's root certificate,
// which the control plane publishes in every namespace.
func volumes() []corev1.Volume {
	return []corev1.Volume{
		{Name: TokenVolume, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
				Audience: TokenAudience, ExpirationSeconds: ptr.To[int64](tokenExpiration), Path: "istio-token",
			}}},
		}}},
		{Name: RootCertVolume, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: RootCertMap},
		}}},
	}
}

// joinLabels writes labels as `zmesh proxy --labels` takes them, sorted.
// Label values cannot hold commas or "=", so the list is unambiguous.
func joinLabels(labels map[string]string) string {
	var b strings.Builder
	for i, k := range sortedKeys(labels) {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k + "=" + labels[k])
	}
	return b.String()
}

func sortedKeys(m map[string]string) []string {
	return slices.Sorted(maps.Keys(m))
}
