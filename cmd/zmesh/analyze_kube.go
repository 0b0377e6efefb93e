//go:build !zmesh_dataplane

package main

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/zmesh/zmesh/internal/analyze"
	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/config/kubesource"
	"github.com/zmesh/zmesh/internal/controlplane"
)

// clusterInput reads what `zmesh analyze --kubernetes` analyzes from a
// cluster: its Istio resources through the control plane's own Kubernetes
// source (kubesource.Load: the same parse and validation, the same
// rejections), its namespaces, Services and Pods, and the mesh ConfigMap
// of the root namespace. It only lists; it changes nothing.
func clusterInput(ctx context.Context, kubeconfig, rootNamespace string) (analyze.Input, error) {
	in := analyze.Input{Cluster: true}
	rc, err := kubesource.RESTConfig(kubeconfig, kubeconfig == "")
	if err != nil {
		return in, err
	}
	snap, rejected, warnings, err := kubesource.Load(ctx, rc)
	if err != nil {
		return in, err
	}
	in.Snapshot, in.Warnings = snap, warnings
	for _, r := range rejected {
		in.Rejected = append(in.Rejected, &config.SourceError{Source: "kubernetes", Kind: r.Kind, Key: r.Namespace + "/" + r.Name, Err: r.Err})
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return in, err
	}
	nss, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return in, fmt.Errorf("analyze: list namespaces: %w", err)
	}
	for _, ns := range nss.Items {
		in.Namespaces = append(in.Namespaces, analyze.Namespace{Name: ns.Name, Labels: ns.Labels, Annotations: ns.Annotations, Source: "kubernetes", Declared: true})
	}
	svcs, err := cs.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return in, fmt.Errorf("analyze: list services: %w", err)
	}
	for _, s := range svcs.Items {
		in.Services = append(in.Services, serviceOf(s))
	}
	pods, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return in, fmt.Errorf("analyze: list pods: %w", err)
	}
	for _, p := range pods.Items {
		in.Workloads = append(in.Workloads, analyze.Workload{Kind: "Pod", Name: p.Name, Namespace: p.Namespace, Labels: p.Labels,
			Annotations: p.Annotations, ServiceAccount: p.Spec.ServiceAccountName, Source: "kubernetes"})
	}
	cm, err := cs.CoreV1().ConfigMaps(rootNamespace).Get(ctx, "istio", metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return in, fmt.Errorf("analyze: mesh ConfigMap %s/istio: %w", rootNamespace, err)
	case strings.TrimSpace(cm.Data["mesh"]) != "":
		if in.Mesh, err = controlplane.ParseMeshConfig([]byte(cm.Data["mesh"])); err != nil {
			return in, fmt.Errorf("analyze: mesh ConfigMap %s/istio: %w", rootNamespace, err)
		}
	}
	return in, nil
}

func serviceOf(s corev1.Service) analyze.Service {
	out := analyze.Service{Name: s.Name, Namespace: s.Namespace, Labels: s.Labels, Annotations: s.Annotations,
		Type: string(s.Spec.Type), Selector: s.Spec.Selector, Source: "kubernetes"}
	for _, p := range s.Spec.Ports {
		sp := analyze.ServicePort{Name: p.Name, Port: p.Port, Protocol: string(p.Protocol)}
		if p.TargetPort.String() != "0" {
			sp.TargetPort = p.TargetPort.String()
		}
		if p.AppProtocol != nil {
			sp.AppProtocol = *p.AppProtocol
		}
		out.Ports = append(out.Ports, sp)
	}
	return out
}
