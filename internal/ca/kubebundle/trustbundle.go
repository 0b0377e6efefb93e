package kubebundle

import (
	"context"
	"fmt"

	certv1 "k8s.io/api/certificates/v1"
	certv1beta1 "k8s.io/api/certificates/v1beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// trustBundles is the ClusterTrustBundle API of one version: v1 (Kubernetes
// 1.37 on) or v1beta1, whichever the cluster serves, v1 first.
type trustBundles interface {
	version() string
	informer(f informers.SharedInformerFactory) cache.SharedIndexInformer
	// bundle returns the trust bundle of a cached object.
	bundle(obj any) (string, bool)
	create(ctx context.Context, name, bundle string) error
	update(ctx context.Context, obj any, bundle string) error
}

// servedTrustBundles asks discovery which ClusterTrustBundle version the
// cluster serves; nil when none (the API is off by default before 1.37).
func servedTrustBundles(c kubernetes.Interface) trustBundles {
	for _, api := range []trustBundles{v1Bundles{c}, v1beta1Bundles{c}} {
		list, err := c.Discovery().ServerResourcesForGroupVersion(api.version())
		if err != nil {
			continue
		}
		for _, r := range list.APIResources {
			if r.Name == "clustertrustbundles" {
				return api
			}
		}
	}
	return nil
}

func bundleMeta(name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Labels: map[string]string{"app.kubernetes.io/managed-by": "zmesh"}}
}

type v1Bundles struct{ c kubernetes.Interface }

func (v1Bundles) version() string { return certv1.SchemeGroupVersion.String() }
func (v1Bundles) informer(f informers.SharedInformerFactory) cache.SharedIndexInformer {
	return f.Certificates().V1().ClusterTrustBundles().Informer()
}
func (v1Bundles) bundle(obj any) (string, bool) {
	b, ok := obj.(*certv1.ClusterTrustBundle)
	if !ok {
		return "", false
	}
	return b.Spec.TrustBundle, true
}
func (v v1Bundles) create(ctx context.Context, name, bundle string) error {
	_, err := v.c.CertificatesV1().ClusterTrustBundles().Create(ctx, &certv1.ClusterTrustBundle{
		ObjectMeta: bundleMeta(name), Spec: certv1.ClusterTrustBundleSpec{TrustBundle: bundle},
	}, metav1.CreateOptions{})
	return err
}
func (v v1Bundles) update(ctx context.Context, obj any, bundle string) error {
	b, ok := obj.(*certv1.ClusterTrustBundle)
	if !ok {
		return fmt.Errorf("unexpected %T", obj)
	}
	b = b.DeepCopy()
	b.Spec.TrustBundle = bundle
	_, err := v.c.CertificatesV1().ClusterTrustBundles().Update(ctx, b, metav1.UpdateOptions{})
	return err
}

type v1beta1Bundles struct{ c kubernetes.Interface }

func (v1beta1Bundles) version() string { return certv1beta1.SchemeGroupVersion.String() }
func (v1beta1Bundles) informer(f informers.SharedInformerFactory) cache.SharedIndexInformer {
	return f.Certificates().V1beta1().ClusterTrustBundles().Informer()
}
func (v1beta1Bundles) bundle(obj any) (string, bool) {
	b, ok := obj.(*certv1beta1.ClusterTrustBundle)
	if !ok {
		return "", false
	}
	return b.Spec.TrustBundle, true
}
func (v v1beta1Bundles) create(ctx context.Context, name, bundle string) error {
	_, err := v.c.CertificatesV1beta1().ClusterTrustBundles().Create(ctx, &certv1beta1.ClusterTrustBundle{
		ObjectMeta: bundleMeta(name), Spec: certv1beta1.ClusterTrustBundleSpec{TrustBundle: bundle},
	}, metav1.CreateOptions{})
	return err
}
func (v v1beta1Bundles) update(ctx context.Context, obj any, bundle string) error {
	b, ok := obj.(*certv1beta1.ClusterTrustBundle)
	if !ok {
		return fmt.Errorf("unexpected %T", obj)
	}
	b = b.DeepCopy()
	b.Spec.TrustBundle = bundle
	_, err := v.c.CertificatesV1beta1().ClusterTrustBundles().Update(ctx, b, metav1.UpdateOptions{})
	return err
}
