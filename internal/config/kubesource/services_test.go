package kubesource_test

import (
	"context"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/zmesh/zmesh/internal/config/kubesource"
	"github.com/zmesh/zmesh/internal/registry"
)

// services records what a Source hands to Config.Services.
type services struct {
	mu     sync.Mutex
	latest []registry.Service
	ch     chan struct{}
}

func newServices() *services { return &services{ch: make(chan struct{}, 1)} }

func (s *services) set(svcs []registry.Service) {
	s.mu.Lock()
	s.latest = svcs
	s.mu.Unlock()
	select {
	case s.ch <- struct{}{}:
	default:
	}
}

// wait returns the service host once ok accepts it, failing after limit.
func (s *services) wait(t *testing.T, host string, limit time.Duration, ok func(registry.Service) bool) registry.Service {
	t.Helper()
	timer := time.NewTimer(limit)
	defer timer.Stop()
	for {
		s.mu.Lock()
		var last registry.Service
		for _, svc := range s.latest {
			if svc.Hostname == host {
				last = svc
			}
		}
		s.mu.Unlock()
		if last.Hostname != "" && ok(last) {
			return last
		}
		select {
		case <-s.ch:
		case <-timer.C:
			t.Fatalf("service %s not as expected after %s; last: %+v", host, limit, last)
		}
	}
}

// TestServiceFromCluster creates a Service, its EndpointSlice and two Pods
// (one injected, one not) and checks the registry.Service the source
// builds: ClusterIP, ports with appProtocol and target port, and one
// endpoint per pod with the identity of its service account when it has a
// proxy. A pod relabelled, then the slice deleted, update it.
func TestServiceFromCluster(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	const ns = "svc"
	e.namespace(t, ns)
	core := e.kube.CoreV1()
	for _, sa := range []string{"books", "default"} {
		// No controller manager here makes the default one.
		if _, err := core.ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	mkPod := func(name, sa string, injected bool) {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": "books", "pod": name}},
			Spec: corev1.PodSpec{
				ServiceAccountName: sa,
				Containers:         []corev1.Container{{Name: "app", Image: "books"}},
			},
		}
		if injected {
			p.Spec.InitContainers = []corev1.Container{{Name: kubesource.ProxyContainer, Image: "zmesh", RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways)}}
		}
		if _, err := core.Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = core.Pods(ns).Delete(context.Background(), name, metav1.DeleteOptions{}) })
	}
	mkPod("books-0", "books", true)
	mkPod("books-1", "", false)
	svc, err := core.Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "books", Namespace: ns},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "books"},
			Ports: []corev1.ServicePort{
				{Name: "web", Port: 80, TargetPort: intstr.FromInt32(8080), AppProtocol: ptr.To("http")},
				{Name: "grpc-api", Port: 9000, TargetPort: intstr.FromString("grpc")},
				{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP},
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = core.Services(ns).Delete(context.Background(), "books", metav1.DeleteOptions{}) })
	slices := e.kube.DiscoveryV1().EndpointSlices(ns)
	if _, err := slices.Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "books-abc", Namespace: ns, Labels: map[string]string{discoveryv1.LabelServiceName: "books"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports: []discoveryv1.EndpointPort{
			{Name: ptr.To("web"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)},
			{Name: ptr.To("grpc-api"), Port: ptr.To[int32](9090), Protocol: ptr.To(corev1.ProtocolTCP)},
		},
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"10.1.0.10"}, TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "books-0", Namespace: ns}},
			{Addresses: []string{"10.1.0.11"}, TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "books-1", Namespace: ns}},
			{Addresses: []string{"10.1.0.12"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false)}},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	got := newServices()
	e.run(t, kubesource.Config{Services: got.set, TrustDomain: "example.org"})
	host := "books.svc.svc.cluster.local"
	s := got.wait(t, host, 10*time.Second, func(s registry.Service) bool { return len(s.Endpoints) == 4 })

	if len(s.Addresses) != 1 || s.Addresses[0] != svc.Spec.ClusterIP || s.Namespace != ns {
		t.Errorf("addresses = %v namespace %s, want the ClusterIP %s", s.Addresses, s.Namespace, svc.Spec.ClusterIP)
	}
	wantPorts := []registry.Port{{Number: 80, Name: "web", Protocol: "HTTP", TargetPort: 8080}, {Number: 9000, Name: "grpc-api"}}
	if len(s.Ports) != 2 || s.Ports[0] != wantPorts[0] || s.Ports[1] != wantPorts[1] {
		t.Errorf("ports = %+v, want %+v (UDP left out)", s.Ports, wantPorts)
	}
	byAddr := map[string]registry.Endpoint{}
	for _, ep := range s.Endpoints {
		byAddr[ep.Address] = ep
	}
	for _, addr := range []string{"10.1.0.10:8080", "10.1.0.10:9090"} {
		ep := byAddr[addr]
		if !ep.HasProxy || ep.Identity != "spiffe://example.org/ns/svc/sa/books" || ep.Workload != "svc/books-0" ||
			ep.Labels["pod"] != "books-0" || ep.Labels[registry.LabelTLSMode] != registry.TLSModeIstio {
			t.Errorf("injected endpoint %s = %+v", addr, ep)
		}
	}
	for _, addr := range []string{"10.1.0.11:8080", "10.1.0.11:9090"} {
		if ep := byAddr[addr]; ep.HasProxy || ep.Identity != "" || ep.Workload != "svc/books-1" {
			t.Errorf("plain endpoint %s = %+v", addr, ep)
		}
	}

	// Istio's injected-pod label gives books-1 a proxy, with the default
	// service account's identity.
	p, err := core.Pods(ns).Get(ctx, "books-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Labels[registry.LabelTLSMode] = registry.TLSModeIstio
	if _, err := core.Pods(ns).Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	got.wait(t, host, 2*time.Second, func(s registry.Service) bool {
		for _, ep := range s.Endpoints {
			if ep.Address == "10.1.0.11:8080" {
				return ep.HasProxy && ep.Identity == "spiffe://example.org/ns/svc/sa/default"
			}
		}
		return false
	})

	if err := slices.Delete(ctx, "books-abc", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	got.wait(t, host, 2*time.Second, func(s registry.Service) bool { return len(s.Endpoints) == 0 && len(s.Addresses) == 1 })
}
