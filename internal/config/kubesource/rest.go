package kubesource

import (
	"fmt"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// RESTConfig returns the client configuration of a kubeconfig file, or,
// with inCluster, of the pod's service account (the path is then
// ignored). Which one applies is the caller's decision (cmd/zmesh's): no
// environment is read here beyond what rest.InClusterConfig reads.
func RESTConfig(kubeconfig string, inCluster bool) (*rest.Config, error) {
	if inCluster {
		c, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("kubesource: in-cluster config: %w", err)
		}
		return c, nil
	}
	if kubeconfig == "" {
		return nil, fmt.Errorf("kubesource: a kubeconfig file is required outside a cluster")
	}
	c, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubesource: kubeconfig %s: %w", kubeconfig, err)
	}
	return c, nil
}
