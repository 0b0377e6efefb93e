package install

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"

	"github.com/zmesh/zmesh/internal/inject"
	"github.com/zmesh/zmesh/internal/validator"
)

// Names of the objects install creates.
const (
	Namespace     = "istio-system"
	Name          = "zmesh" // ServiceAccount, Deployment, Service, RBAC, PDB
	MeshConfigMap = "istio" // Istio's mesh ConfigMap, key "mesh"
	FieldManager  = "zmesh"
)

// Ports of the control plane, Istio's numbers.
const (
	PortGRPC    = 15012
	PortWebhook = 15017
	PortAdmin   = 15014
)

// Config says what to install.
type Config struct {
	// Image of the control plane and of the injected containers; default
	// inject.DefaultImage.
	Image string
	// Replicas of the control plane; default 2.
	Replicas int32
	// TrustDomain of the mesh; default cluster.local.
	TrustDomain string
	// CRDs returns Istio's CRDs, unchanged; nil installs none.
	CRDs func() ([]*unstructured.Unstructured, error)
	// GatewayNamespaces are the namespaces, besides istio-system, where
	// gateways run: the control plane may read Secrets there (a Role and
	// RoleBinding each, gatewayCredentialRole), to serve gateways the
	// credentials their Gateways name. Each must exist.
	GatewayNamespaces []string
}

// Validate checks c and fills in defaults.
func (c *Config) Validate() error {
	if c.Image == "" {
		c.Image = inject.DefaultImage
	}
	if strings.ContainsAny(c.Image, " \t\n") {
		return fmt.Errorf("install: image %q", c.Image)
	}
	if c.Replicas == 0 {
		c.Replicas = 2
	}
	if c.Replicas < 1 {
		return errors.New("install: replicas must be at least 1")
	}
	if c.TrustDomain == "" {
		c.TrustDomain = "cluster.local"
	}
	for _, ns := range c.GatewayNamespaces {
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			return fmt.Errorf("install: gateway namespace %q: %s", ns, strings.Join(errs, "; "))
		}
	}
	return nil
}

// labels mark every object install creates.
var labels = map[string]string{
	"app.kubernetes.io/name":       Name,
	"app.kubernetes.io/part-of":    "zmesh",
	"app.kubernetes.io/managed-by": "zmesh",
}

// selector picks the control plane's pods.
var selector = map[string]string{"app": Name}

// PodSelector is the label selector of the control plane's pods, for
// tools that look for them (proxy-status).
const PodSelector = "app=" + Name

// AdminPortName names the admin port among the control plane container's
// ports.
const AdminPortName = "http-monitoring"

func meta(name, ns string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels}
}

// Objects returns everything install applies, in the order to apply it:
// CRDs, the namespace, identity and RBAC, config, the Service, the
// Deployment and its PodDisruptionBudget, the validating webhook for
// Istio resources, and last the injection webhook configuration, so that pod creations are not sent to a control plane
// that does not exist yet. uninstall removes them in the reverse order.
func Objects(cfg Config) ([]*unstructured.Unstructured, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var out []*unstructured.Unstructured
	if cfg.CRDs != nil {
		crds, err := cfg.CRDs()
		if err != nil {
			return nil, fmt.Errorf("install: Istio CRDs: %w", err)
		}
		out = append(out, crds...)
	}
	webhook, err := webhookConfiguration(cfg)
	if err != nil {
		return nil, err
	}
	typed := []runtime.Object{
		&corev1.Namespace{TypeMeta: typeMeta("v1", "Namespace"), ObjectMeta: meta(Namespace, "")},
		&corev1.ServiceAccount{TypeMeta: typeMeta("v1", "ServiceAccount"), ObjectMeta: meta(Name, Namespace)},
		clusterRole(),
		&rbacv1.ClusterRoleBinding{
			TypeMeta: typeMeta("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"), ObjectMeta: meta(Name, ""),
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: Name},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: Name, Namespace: Namespace}},
		},
		role(),
		&rbacv1.RoleBinding{
			TypeMeta: typeMeta("rbac.authorization.k8s.io/v1", "RoleBinding"), ObjectMeta: meta(Name, Namespace),
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: Name},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: Name, Namespace: Namespace}},
		},
		&corev1.ConfigMap{
			TypeMeta: typeMeta("v1", "ConfigMap"), ObjectMeta: meta(MeshConfigMap, Namespace),
			Data: map[string]string{"mesh": fmt.Sprintf("trustDomain: %s\nrootNamespace: %s\n", cfg.TrustDomain, Namespace)},
		},
		service(),
		deployment(cfg),
		&policyv1.PodDisruptionBudget{
			TypeMeta: typeMeta("policy/v1", "PodDisruptionBudget"), ObjectMeta: meta(Name, Namespace),
			Spec: policyv1.PodDisruptionBudgetSpec{
				MinAvailable: ptr.To(intstr.FromInt32(1)),
				Selector:     &metav1.LabelSelector{MatchLabels: selector},
			},
		},
		validatorConfiguration(),
		webhook,
	}
	// Before the injection webhook, which stays last.
	typed = slices.Insert(typed, len(typed)-1, gatewayCredentialObjects(cfg.GatewayNamespaces)...)
	for _, o := range typed {
		u, err := toUnstructured(o)
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, nil
}

func typeMeta(apiVersion, kind string) metav1.TypeMeta {
	return metav1.TypeMeta{APIVersion: apiVersion, Kind: kind}
}

// toUnstructured converts a typed object, leaving out what the typed
// form always carries but an applied manifest should not: an empty
// status and a null creationTimestamp.
func toUnstructured(o runtime.Object) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
	if err != nil {
		return nil, fmt.Errorf("install: %T: %w", o, err)
	}
	u := &unstructured.Unstructured{Object: m}
	unstructured.RemoveNestedField(u.Object, "status")
	if spec, ok := u.Object["spec"].(map[string]any); ok && len(spec) == 0 {
		delete(u.Object, "spec")
	}
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	unstructured.RemoveNestedField(u.Object, "spec", "template", "metadata", "creationTimestamp")
	return u, nil
}

// injection is what the control plane's webhook injects, as install
// configures it.
func injection(cfg Config) (*inject.Settings, error) {
	s := &inject.Settings{
		Image:        cfg.Image,
		ControlPlane: fmt.Sprintf("%s.%s.svc:%d", Name, Namespace, PortGRPC),
		TrustDomain:  cfg.TrustDomain,
	}
	return s, s.Validate()
}

// webhookConfiguration is the MutatingWebhookConfiguration with a service
// client config. Its caBundle is left empty: the mesh root exists only
// once the control plane has started, and the control plane fills it in
// (and keeps it current through root rotations). Until then pod
// creations in mesh namespaces fail, as they must with no injector.
func webhookConfiguration(cfg Config) (*admissionregistrationv1.MutatingWebhookConfiguration, error) {
	s, err := injection(cfg)
	if err != nil {
		return nil, err
	}
	w := s.WebhookConfiguration(admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{
		Namespace: Namespace, Name: Name, Path: ptr.To(inject.WebhookPath), Port: ptr.To[int32](443),
	}})
	w.Labels = labels
	return w, nil
}

// validatorConfiguration is the validating webhook for Istio resources,
// through the Service like the injector. It starts with failurePolicy
// Ignore and no caBundle: until a control plane serves (and sets both),
// Istio resources can be applied, and the control plane still refuses at
// read time what it would not have admitted.
func validatorConfiguration() *admissionregistrationv1.ValidatingWebhookConfiguration {
	v := validator.Configuration(admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{
		Namespace: Namespace, Name: Name, Path: ptr.To(validator.Path), Port: ptr.To[int32](443),
	}}, admissionregistrationv1.Ignore)
	v.Labels = labels
	return v
}

func service() *corev1.Service {
	port := func(name string, port, target int32) corev1.ServicePort {
		return corev1.ServicePort{Name: name, Port: port, TargetPort: intstr.FromInt32(target), Protocol: corev1.ProtocolTCP}
	}
	return &corev1.Service{
		TypeMeta: typeMeta("v1", "Service"), ObjectMeta: meta(Name, Namespace),
		Spec: corev1.ServiceSpec{
			Selector: selector,
			Ports: []corev1.ServicePort{
				port("grpc-xds", PortGRPC, PortGRPC),
				port("https-webhook", 443, PortWebhook),
				port(AdminPortName, PortAdmin, PortAdmin),
			},
		},
	}
}

// dataDir is the control plane's writable directory inside its container
// (the root filesystem is read-only, so it is a volume). Its config has no
// path: in the pod, with neither --config-dir nor --kubeconfig, the
// control plane reads Istio's resources and the mesh ConfigMap from the
// cluster through its service account.
const dataDir = "/var/lib/zmesh"

func deployment(cfg Config) *appsv1.Deployment {
	podLabels := map[string]string{"app": Name, inject.LabelInject: "false"}
	for k, v := range labels {
		podLabels[k] = v
	}
	const uid = 65532 // the conventional non-root user of static images
	return &appsv1.Deployment{
		TypeMeta: typeMeta("apps/v1", "Deployment"), ObjectMeta: meta(Name, Namespace),
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(cfg.Replicas),
			Selector: &metav1.LabelSelector{MatchLabels: selector},
			Strategy: appsv1.DeploymentStrategy{
				Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{
					MaxUnavailable: ptr.To(intstr.FromInt32(0)), MaxSurge: ptr.To(intstr.FromInt32(1)),
				},
			},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels},
				Spec: corev1.PodSpec{
					ServiceAccountName: Name,
					SecurityContext: &corev1.PodSecurityContext{
						RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](uid), RunAsGroup: ptr.To[int64](uid), FSGroup: ptr.To[int64](uid),
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
					Affinity: &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
						PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{
							Weight: 100,
							PodAffinityTerm: corev1.PodAffinityTerm{
								LabelSelector: &metav1.LabelSelector{MatchLabels: selector},
								TopologyKey:   "kubernetes.io/hostname",
							},
						}},
					}},
					Containers: []corev1.Container{controlPlaneContainer(cfg)},
					Volumes: []corev1.Volume{
						{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
					},
				},
			},
		},
	}
}

func controlPlaneContainer(cfg Config) corev1.Container {
	port := func(name string, p int32) corev1.ContainerPort {
		return corev1.ContainerPort{Name: name, ContainerPort: p, Protocol: corev1.ProtocolTCP}
	}
	return corev1.Container{
		Name:            "controlplane",
		Image:           cfg.Image,
		ImagePullPolicy: corev1.PullIfNotPresent,
		Args: []string{
			"controlplane",
			fmt.Sprintf("--listen=0.0.0.0:%d", PortGRPC),
			fmt.Sprintf("--admin=0.0.0.0:%d", PortAdmin),
			fmt.Sprintf("--webhook=0.0.0.0:%d", PortWebhook),
			"--webhook-register=service",
			"--proxy-image=" + cfg.Image,
			fmt.Sprintf("--proxy-controlplane=%s.%s.svc:%d", Name, Namespace, PortGRPC),
			"--trust-domain=" + cfg.TrustDomain,
			"--root-namespace=" + Namespace,
			"--data-dir=" + dataDir,
		},
		Ports: []corev1.ContainerPort{port("grpc-xds", PortGRPC), port("https-webhook", PortWebhook), port(AdminPortName, PortAdmin)},
		Env: []corev1.EnvVar{
			{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.name"}}},
			{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"}}},
			// Go's GC aims below the container's memory limit instead of
			// letting a reconnect wave's garbage grow the heap into an OOM
			// kill: the limit is the figure a soft memory limit needs.
			{Name: "GOMEMLIMIT", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{ContainerName: "controlplane", Resource: "limits.memory", Divisor: resource.MustParse("1")}}},
		},
		ReadinessProbe: &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromInt32(PortAdmin)}},
			PeriodSeconds: 5, TimeoutSeconds: 3, FailureThreshold: 3,
		},
		// Liveness asks only that the process serves: a control plane that
		// cannot reach the API is not ready, but restarting it would not
		// help.
		LivenessProbe: &corev1.Probe{
			ProbeHandler:        corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(PortAdmin)}},
			InitialDelaySeconds: 10, PeriodSeconds: 10, TimeoutSeconds: 3, FailureThreshold: 6,
		},
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("200m"), corev1.ResourceMemory: resource.MustParse("256Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("2Gi")},
		},
		SecurityContext: &corev1.SecurityContext{
			RunAsNonRoot: ptr.To(true), AllowPrivilegeEscalation: ptr.To(false), Privileged: ptr.To(false),
			ReadOnlyRootFilesystem: ptr.To(true),
			Capabilities:           &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
		VolumeMounts: []corev1.VolumeMount{
			{Name: "data", MountPath: dataDir},
		},
	}
}
