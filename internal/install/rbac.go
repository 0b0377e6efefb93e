package install

import (
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/zmesh/zmesh/internal/ca/kubebundle"
	"github.com/zmesh/zmesh/internal/inject"
	"github.com/zmesh/zmesh/internal/validator"
)

// read are the verbs of a reader, informers included.
var read = []string{"get", "list", "watch"}

// clusterRole is what the control plane may do across the cluster, and no
// more: read Istio's resources and what the registry is built from, write
// only the root-certificate ConfigMaps it publishes, events, its own
// two webhook configurations, and TokenReviews to authenticate proxies.
// Creating cannot be limited to names (the name is not known to RBAC
// before the object exists), so ConfigMap creation is cluster-wide; update
// and delete are limited to istio-ca-root-cert.
func clusterRole() *rbacv1.ClusterRole {
	return &rbacv1.ClusterRole{
		TypeMeta: typeMeta("rbac.authorization.k8s.io/v1", "ClusterRole"), ObjectMeta: meta(Name, ""),
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"security.istio.io", "networking.istio.io", "telemetry.istio.io", "extensions.istio.io"}, Resources: []string{"*"}, Verbs: read},
			{APIGroups: []string{""}, Resources: []string{"namespaces", "services", "pods", "configmaps"}, Verbs: read},
			{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: read},
			{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"create"}},
			{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{inject.RootCertMap}, Verbs: []string{"update", "patch", "delete"}},
			{APIGroups: []string{"", "events.k8s.io"}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
			{APIGroups: []string{"admissionregistration.k8s.io"}, Resources: []string{"mutatingwebhookconfigurations"}, Verbs: read},
			{APIGroups: []string{"admissionregistration.k8s.io"}, Resources: []string{"mutatingwebhookconfigurations"}, ResourceNames: []string{inject.WebhookConfigurationName}, Verbs: []string{"update", "patch"}},
			{APIGroups: []string{"admissionregistration.k8s.io"}, Resources: []string{"validatingwebhookconfigurations"}, Verbs: read},
			{APIGroups: []string{"admissionregistration.k8s.io"}, Resources: []string{"validatingwebhookconfigurations"}, ResourceNames: []string{validator.ConfigurationName}, Verbs: []string{"update", "patch"}},
			{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}},
			// The trust bundle, published where the API serves it: created
			// anywhere (RBAC knows no name before creation), changed only
			// under its own name.
			{APIGroups: []string{"certificates.k8s.io"}, Resources: []string{"clustertrustbundles"}, Verbs: []string{"get", "list", "watch", "create"}},
			{APIGroups: []string{"certificates.k8s.io"}, Resources: []string{"clustertrustbundles"}, ResourceNames: []string{kubebundle.DefaultClusterTrustBundle}, Verbs: []string{"update", "patch"}},
		},
	}
}

// role is what the control plane may do in its own namespace only: keep
// the CA's key material in Secrets (istio-ca-secret, and read cacerts)
// and elect a leader for CA creation and rotation with Leases. Secrets
// anywhere else stay out of its reach.
func role() *rbacv1.Role {
	return &rbacv1.Role{
		TypeMeta: typeMeta("rbac.authorization.k8s.io/v1", "Role"), ObjectMeta: meta(Name, Namespace),
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch"}},
			{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}},
		},
	}
}

// GatewayCredentialRole names the Role and RoleBinding that let the
// control plane read Secrets in a gateway namespace.
const GatewayCredentialRole = Name + "-gateway-credentials"

// gatewayCredentialObjects are, for each gateway namespace other than
// the control plane's own (whose Secrets role already covers), a Role
// that reads Secrets there and its RoleBinding to the control plane.
//
// Why not Istio's cluster-wide get/list/watch on Secrets: a gateway
// serves only the Secrets of its own namespace, so the control plane
// needs Secrets only where gateways run, and RBAC cannot narrow further
// by name (credentialNames are not known at install). The control plane
// itself then reads only the Secrets that connected gateways' Gateways
// name, one watch per Secret selected by name (kubesource.Credentials),
// so it never holds another Secret's key even where it may read.
func gatewayCredentialObjects(namespaces []string) []runtime.Object {
	var out []runtime.Object
	seen := map[string]bool{Namespace: true}
	for _, ns := range namespaces {
		if seen[ns] {
			continue
		}
		seen[ns] = true
		out = append(out,
			&rbacv1.Role{
				TypeMeta: typeMeta("rbac.authorization.k8s.io/v1", "Role"), ObjectMeta: meta(GatewayCredentialRole, ns),
				Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: read}},
			},
			&rbacv1.RoleBinding{
				TypeMeta: typeMeta("rbac.authorization.k8s.io/v1", "RoleBinding"), ObjectMeta: meta(GatewayCredentialRole, ns),
				RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: GatewayCredentialRole},
				Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: Name, Namespace: Namespace}},
			})
	}
	return out
}
