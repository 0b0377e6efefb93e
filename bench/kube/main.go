// Command kube measures the control plane in Kubernetes mode against a
// real etcd + kube-apiserver (internal/kubetest, no kubelet):
//
//  1. memory: the cluster is filled with --namespaces namespaces of
//     --policies AuthorizationPolicies each and --pods pods, then a real
//     `zmesh controlplane --kubeconfig` starts and lists them into its
//     informers; its RSS (now and peak, from /proc) is reported once its
//     config is in force.
//
//  2. propagation: --proxies simulated proxies (the proxy's own delta-xDS
//     client, internal/xds/client) in namespace bench, each with a
//     certificate obtained as a real proxy's is (a TokenRequest token for
//     istio-ca, a CSR the control plane checks with TokenReview), are
//     selected by one AuthorizationPolicy; it is updated --changes times
//     through the API, and each change's latency is the time from the
//     update call to the last proxy applying a view holding it.
//
//     go run ./bench/kube [--namespaces 1000 --policies 10 --pods 10000] [--proxies 50 --changes 100]
//
// Last lines:
//
//	kube: namespaces=N policies=P pods=Q cp_rss_mib=R cp_peak_rss_mib=R sync_s=S
//	kube: proxies=N changes=C p50=MS p99=MS max=MS
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/zmesh/zmesh/internal/kubecrd"
	"github.com/zmesh/zmesh/internal/kubetest"
)

type options struct {
	namespaces, policies, pods, proxies, changes, workers int
	zmesh                                                 string
	timeout                                               time.Duration
}

func main() {
	var o options
	flag.IntVar(&o.namespaces, "namespaces", 1000, "namespaces filled with policies and pods")
	flag.IntVar(&o.policies, "policies", 10, "AuthorizationPolicies per namespace")
	flag.IntVar(&o.pods, "pods", 10000, "pods, spread over the namespaces")
	flag.IntVar(&o.proxies, "proxies", 50, "simulated proxies selected by the changed policy")
	flag.IntVar(&o.changes, "changes", 100, "policy changes made through the API")
	flag.IntVar(&o.workers, "workers", 16, "concurrent API writers while filling the cluster")
	flag.StringVar(&o.zmesh, "zmesh", "", "zmesh binary (default: built from ./cmd/zmesh with -tags grpcnotrace)")
	flag.DurationVar(&o.timeout, "timeout", 20*time.Minute, "give up after")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	err := run(ctx, o)
	cancel()
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "kube:", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) { fmt.Printf("kube: "+format+"\n", args...) }

func run(ctx context.Context, o options) error {
	dir, err := os.MkdirTemp("", "zmesh-bench-kube-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := o.zmesh
	if bin == "" {
		bin = filepath.Join(dir, "zmesh")
		build := exec.Command("go", "build", "-tags", "grpcnotrace", "-trimpath", "-o", bin, "./cmd/zmesh")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("build zmesh: %w", err)
		}
	}
	if _, ok := kubetest.BinDir(); !ok {
		return fmt.Errorf("etcd and kube-apiserver %s missing: build them with test/kube/build.sh", kubetest.Version)
	}
	cluster, err := kubetest.Start()
	if err != nil {
		return err
	}
	defer cluster.Stop()
	rc := cluster.RESTConfig()
	rc.QPS, rc.Burst = 2000, 4000
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return err
	}
	if err := kubecrd.Apply(ctx, dyn); err != nil {
		return err
	}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "istio-system"}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	start := time.Now()
	if err := fill(ctx, cs, dyn, o); err != nil {
		return err
	}
	logf("filled the cluster in %s: %d namespaces, %d policies, %d pods", time.Since(start).Round(time.Second), o.namespaces, o.namespaces*o.policies, o.pods)
	if err := prepareBench(ctx, cs, dyn); err != nil {
		return err
	}

	start = time.Now()
	cp, err := startControlPlane(ctx, bin, dir, cluster.Kubeconfig)
	if err != nil {
		return err
	}
	defer cp.stop()
	if err := cp.waitSynced(ctx, "bench/"+benchPolicy); err != nil {
		return err
	}
	synced := time.Since(start)
	rss, peak := cp.memory()
	memLine := fmt.Sprintf("namespaces=%d policies=%d pods=%d cp_rss_mib=%.0f cp_peak_rss_mib=%.0f sync_s=%.1f",
		o.namespaces, o.namespaces*o.policies, o.pods, rss, peak, synced.Seconds())

	f, err := startFleet(ctx, cs, cp, o.proxies)
	if err != nil {
		return err
	}
	defer f.stop()
	lat, err := f.changes(ctx, dyn, o.changes)
	if err != nil {
		return err
	}
	rss2, peak2 := cp.memory()
	logf("control plane RSS after the changes: %.0f MiB (peak %.0f)", rss2, peak2)
	logf("%s", memLine)
	logf("proxies=%d changes=%d p50=%.1f p99=%.1f max=%.1f", o.proxies, len(lat), ms(percentile(lat, 0.50)), ms(percentile(lat, 0.99)), ms(percentile(lat, 1)))
	return nil
}
