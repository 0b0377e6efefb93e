package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
)

var authzGVR = schema.GroupVersionResource{Group: "security.istio.io", Version: "v1", Resource: "authorizationpolicies"}

// The namespace, service account and policy of the simulated proxies.
const (
	benchNamespace = "bench"
	benchAccount   = "proxy"
	benchPolicy    = "bench-allow"
)

func namespace(i int) string { return fmt.Sprintf("ns-%04d", i) }

// policy is AuthorizationPolicy name in ns selecting app, allowing path.
func policy(ns, name, app, path string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec": map[string]any{
			"selector": map[string]any{"matchLabels": map[string]any{"app": app}},
			"action":   "ALLOW",
			"rules": []any{map[string]any{
				"from": []any{map[string]any{"source": map[string]any{"principals": []any{"cluster.local/ns/" + ns + "/sa/default"}}}},
				"to":   []any{map[string]any{"operation": map[string]any{"paths": []any{path}, "methods": []any{"GET"}}}},
			}},
		},
	}}
}

// fill creates the namespaces (each with its default service account,
// which no controller manager creates here), their policies and the pods,
// with o.workers concurrent writers.
func fill(ctx context.Context, cs kubernetes.Interface, dyn dynamic.Interface, o options) error {
	type job func(context.Context) error
	jobs := make(chan job)
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for range o.workers {
		wg.Go(func() {
			for j := range jobs {
				if err := j(ctx); err != nil {
					firstErr.CompareAndSwap(nil, err)
				}
			}
		})
	}
	send := func(j job) bool {
		if firstErr.Load() != nil {
			return false
		}
		select {
		case jobs <- j:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for i := range o.namespaces {
		ns := namespace(i)
		if !send(func(ctx context.Context) error {
			if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
				return err
			}
			_, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
			return err
		}) {
			break
		}
	}
	// Namespaces first: the later jobs need them.
	close(jobs)
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return err
	}
	jobs = make(chan job)
	for range o.workers {
		wg.Go(func() {
			for j := range jobs {
				if err := j(ctx); err != nil {
					firstErr.CompareAndSwap(nil, err)
				}
			}
		})
	}
	for i := range o.namespaces {
		ns := namespace(i)
		for p := range o.policies {
			if !send(func(ctx context.Context) error {
				app := fmt.Sprintf("app-%d", p)
				_, err := dyn.Resource(authzGVR).Namespace(ns).Create(ctx, policy(ns, app, app, "/"+app), metav1.CreateOptions{})
				return err
			}) {
				break
			}
		}
	}
	for i := range o.pods {
		ns := namespace(i % max(o.namespaces, 1))
		if !send(func(ctx context.Context) error {
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pod-%05d", i), Namespace: ns,
					Labels: map[string]string{"app": fmt.Sprintf("app-%d", i%max(o.policies, 1)), "version": "v1"}},
				Spec: corev1.PodSpec{ServiceAccountName: "default", Containers: []corev1.Container{{Name: "app", Image: "example/app:1"}}},
			}
			_, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
			return err
		}) {
			break
		}
	}
	close(jobs)
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return err
	}
	return ctx.Err()
}

// prepareBench creates the simulated proxies' namespace, account and the
// policy the changes edit.
func prepareBench(ctx context.Context, cs kubernetes.Interface, dyn dynamic.Interface) error {
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: benchNamespace}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	if _, err := cs.CoreV1().ServiceAccounts(benchNamespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: benchAccount}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	_, err := dyn.Resource(authzGVR).Namespace(benchNamespace).Create(ctx, policy(benchNamespace, benchPolicy, "bench", changePath(0)), metav1.CreateOptions{})
	return err
}

// changePath is the path change i allows.
func changePath(i int) string { return fmt.Sprintf("/change-%d", i) }
