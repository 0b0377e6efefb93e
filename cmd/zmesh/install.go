//go:build !zmesh_dataplane

package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/zmesh/zmesh/internal/inject"
	"github.com/zmesh/zmesh/internal/install"
	"github.com/zmesh/zmesh/internal/kubecrd"
)

func installConfig(image string, replicas int32, trustDomain string) install.Config {
	return install.Config{Image: image, Replicas: replicas, TrustDomain: trustDomain, CRDs: kubecrd.Objects}
}

func dynamicClient(kubeconfig string) (dynamic.Interface, error) {
	if kubeconfig == "" {
		return nil, &exitError{code: 2, err: errors.New("--kubeconfig is required")}
	}
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	return dynamic.NewForConfig(rc)
}

func installCmd() *cobra.Command {
	var (
		kubeconfig, image, trustDomain string
		replicas                       int32
		dryRun                         bool
		gatewayNamespaces              []string
	)
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Install zmesh in a Kubernetes cluster (Istio's CRDs, istio-system, RBAC, the control plane, the injection webhook)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := installConfig(image, replicas, trustDomain)
			cfg.GatewayNamespaces = gatewayNamespaces
			objs, err := install.Objects(cfg)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			out := cmd.OutOrStdout()
			if dryRun {
				return install.Render(out, objs)
			}
			dyn, err := dynamicClient(kubeconfig)
			if err != nil {
				return err
			}
			return install.Apply(cmd.Context(), dyn, objs, func(o *unstructured.Unstructured) {
				fmt.Fprintln(out, "applied", install.Describe(o))
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig of the cluster (required unless --dry-run)")
	f.BoolVar(&dryRun, "dry-run", false, "print the objects as multi-document YAML and change nothing")
	f.StringVar(&image, "image", "", "zmesh image for the control plane and the injected containers (default "+inject.DefaultImage+")")
	f.Int32Var(&replicas, "replicas", 2, "control plane replicas")
	f.StringVar(&trustDomain, "trust-domain", "cluster.local", "mesh trust domain")
	f.StringSliceVar(&gatewayNamespaces, "gateway-namespace", nil, "a namespace besides istio-system where gateways run: the control plane may read its Secrets (the gateways' credentialNames); repeatable")
	return cmd
}

func uninstallCmd() *cobra.Command {
	var kubeconfig string
	var purge bool
	var gatewayNamespaces []string
	cmd := &cobra.Command{
		Use:   "uninstall",
		Short: "Remove what zmesh install created (CRDs and istio-system, with the CA's root, only with --purge)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := installConfig("", 0, "")
			cfg.GatewayNamespaces = gatewayNamespaces
			objs, err := install.Objects(cfg)
			if err != nil {
				return err
			}
			dyn, err := dynamicClient(kubeconfig)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			return install.Delete(cmd.Context(), dyn, objs, purge, func(o *unstructured.Unstructured) {
				fmt.Fprintln(out, "deleted", install.Describe(o))
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig of the cluster (required)")
	f.StringSliceVar(&gatewayNamespaces, "gateway-namespace", nil, "the gateway namespaces given to install, whose Roles to remove; repeatable")
	f.BoolVar(&purge, "purge", false, "also delete Istio's CRDs (and every Istio resource with them) and the istio-system namespace (and the mesh's root key)")
	return cmd
}
