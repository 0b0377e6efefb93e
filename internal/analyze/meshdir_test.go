package analyze

import "testing"

// TestZmeshWorkloadsAsUpReadsThem: the analyzer reads zmesh.dev Workloads
// with the local mesh's own parser, so a gateway workload (no command)
// is accepted as `zmesh up` accepts it, and an app without a command is
// refused as `zmesh up` refuses it.
func TestZmeshWorkloadsAsUpReadsThem(t *testing.T) {
	in := FromFiles(map[string][]byte{"w.yaml": []byte(`apiVersion: zmesh.dev/v1alpha1
kind: Workload
metadata: {name: ingress, namespace: istio-system, annotations: {a: b}}
spec: {serviceAccount: ingress, labels: {istio: ingressgateway}, gateway: {ports: {"443": "127.0.0.1:8443"}}}
---
apiVersion: zmesh.dev/v1alpha1
kind: Workload
metadata: {name: app, namespace: web}
spec: {}
`)})
	if len(in.Workloads) != 1 || in.Workloads[0].Name != "ingress" || in.Workloads[0].Labels["istio"] != "ingressgateway" || in.Workloads[0].Annotations["a"] != "b" {
		t.Errorf("workloads %+v, want the gateway", in.Workloads)
	}
	if len(in.Rejected) != 1 || in.Rejected[0].Key != "web/app" {
		t.Errorf("rejected %v, want web/app (no command)", in.Rejected)
	}
}
