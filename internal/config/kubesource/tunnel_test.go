package kubesource

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/zmesh/zmesh/internal/registry"
)

// TestPodEndpointTunnel: a pod with a proxy and Istio's tunnel label is
// reached with HBONE on the tunnel port; the label alone, on a pod
// without a proxy, promises nothing.
func TestPodEndpointTunnel(t *testing.T) {
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   uint32
	}{
		{"proxy and tunnel label", map[string]string{registry.LabelTLSMode: registry.TLSModeIstio, registry.LabelTunnel: registry.TunnelHTTP}, registry.DefaultTunnelPort},
		{"proxy, no tunnel label", map[string]string{registry.LabelTLSMode: registry.TLSModeIstio}, 0},
		{"tunnel label, no proxy", map[string]string{registry.LabelTunnel: registry.TunnelHTTP}, 0},
		{"another tunnel value", map[string]string{registry.LabelTLSMode: registry.TLSModeIstio, registry.LabelTunnel: "none"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", Labels: tc.labels}}
			if got := podEndpoint(pod, "cluster.local").TunnelPort; got != tc.want {
				t.Errorf("TunnelPort = %d, want %d", got, tc.want)
			}
		})
	}
}
