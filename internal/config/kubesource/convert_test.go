package kubesource

import (
	"encoding/json"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/registry"
)

func objectOf(t testing.TB, js string) *object {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(js), &m); err != nil {
		t.Fatal(err)
	}
	o, err := toObject(&unstructured.Unstructured{Object: m})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func TestConvert(t *testing.T) {
	for _, tc := range []struct {
		name, obj string
		err       string // substring; empty: accepted
		check     func(t *testing.T, r config.Resource)
	}{
		{
			name: "server fields dropped, last-applied annotation dropped",
			obj: `{"apiVersion":"security.istio.io/v1","kind":"AuthorizationPolicy",
				"metadata":{"name":"a","namespace":"ns","uid":"u","resourceVersion":"7","generation":2,"creationTimestamp":"2026-01-01T00:00:00Z",
				  "managedFields":[{"manager":"kubectl"}],"labels":{"x":"y"},
				  "annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{}","keep":"me"}},
				"spec":{"action":"DENY","rules":[{}]},"status":{"validationMessages":[]}}`,
			check: func(t *testing.T, r config.Resource) {
				if r.Key() != "ns/a" || r.Labels["x"] != "y" || len(r.Annotations) != 1 || r.Annotations["keep"] != "me" {
					t.Errorf("meta = %+v", r.Meta)
				}
			},
		},
		{
			name: "same resource as the file",
			obj:  `{"apiVersion":"security.istio.io/v1","kind":"PeerAuthentication","metadata":{"name":"default","namespace":"istio-system"},"spec":{"mtls":{"mode":"STRICT"}}}`,
			check: func(t *testing.T, r config.Resource) {
				rs, _, err := config.Parse([]byte("apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: istio-system}\nspec: {mtls: {mode: STRICT}}\n"), "f.yaml")
				if err != nil {
					t.Fatal(err)
				}
				if config.Version([]config.Resource{r}) != config.Version(rs) || !proto.Equal(r.Spec, rs[0].Spec) {
					t.Errorf("cluster %+v differs from file %+v", r, rs[0])
				}
			},
		},
		{
			name: "kind from the informer when the object has none",
			obj:  `{"apiVersion":"security.istio.io/v1","metadata":{"name":"a","namespace":"ns"},"spec":{}}`,
			check: func(t *testing.T, r config.Resource) {
				if r.Kind != config.KindAuthorizationPolicy {
					t.Errorf("kind = %s", r.Kind)
				}
			},
		},
		{name: "validation error names kind and key", obj: `{"apiVersion":"security.istio.io/v1","kind":"AuthorizationPolicy","metadata":{"name":"a","namespace":"ns"},"spec":{"rules":[{"from":[{"source":{"principals":["a*b"]}}]}]}}`, err: "AuthorizationPolicy ns/a: invalid"},
		{name: "unknown field is an error", obj: `{"apiVersion":"security.istio.io/v1","kind":"AuthorizationPolicy","metadata":{"name":"a","namespace":"ns"},"spec":{"actoin":"DENY"}}`, err: "actoin"},
		{name: "unknown kind", obj: `{"apiVersion":"security.istio.io/v1","kind":"Nope","metadata":{"name":"a","namespace":"ns"},"spec":{}}`, err: "not a kind zmesh reads"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, _, err := convert(objectOf(t, tc.obj), config.KindAuthorizationPolicy)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				if strings.Contains(err.Error(), "#1") {
					t.Errorf("error repeats a file-style source: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, r)
		})
	}
}

// FuzzConvert feeds arbitrary JSON objects through the conversion: it must
// accept or reject, never panic, and what it accepts must validate.
func FuzzConvert(f *testing.F) {
	f.Add(`{"apiVersion":"security.istio.io/v1","kind":"AuthorizationPolicy","metadata":{"name":"a","namespace":"ns"},"spec":{"rules":[{"to":[{"operation":{"paths":["/x"]}}]}]}}`)
	f.Add(`{"apiVersion":"networking.istio.io/v1","kind":"ServiceEntry","metadata":{"name":"a","namespace":"ns"},"spec":{"hosts":["a.example"],"ports":[{"number":80,"name":"http"}]}}`)
	f.Add(`{"metadata":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"x"}},"spec":null}`)
	f.Fuzz(func(t *testing.T, js string) {
		var m map[string]any
		if json.Unmarshal([]byte(js), &m) != nil {
			return
		}
		o, err := toObject(&unstructured.Unstructured{Object: m})
		if err != nil {
			return
		}
		r, _, err := convert(o, config.KindAuthorizationPolicy)
		if err == nil {
			if verr := config.Validate(r); verr != nil {
				t.Fatalf("accepted an invalid resource: %v", verr)
			}
		}
	})
}

func TestBuildService(t *testing.T) {
	injected := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p0", Namespace: "ns", Labels: map[string]string{"app": "a"}},
		Spec:       corev1.PodSpec{ServiceAccountName: "sa0", InitContainers: []corev1.Container{{Name: ProxyContainer}}},
	}
	labelled := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p1", Namespace: "ns", Labels: map[string]string{registry.LabelTLSMode: registry.TLSModeIstio}},
	}
	pods := map[string]*corev1.Pod{"ns/p0": injected, "ns/p1": labelled}
	svc := func(mut func(*corev1.Service)) *corev1.Service {
		s := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "a", Namespace: "ns"},
			Spec: corev1.ServiceSpec{
				ClusterIP: "10.96.0.5", ClusterIPs: []string{"10.96.0.5", "fd00::5"},
				Ports: []corev1.ServicePort{{Name: "http-web", Port: 80, TargetPort: intstr.FromInt32(8080)}},
			},
		}
		if mut != nil {
			mut(s)
		}
		return s
	}
	slice := func(addrType discoveryv1.AddressType, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
		return &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: "a-1", Namespace: "ns"},
			AddressType: addrType,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http-web"), Port: ptr.To[int32](8080)}},
			Endpoints:   eps,
		}
	}
	podRef := func(name string) *corev1.ObjectReference { return &corev1.ObjectReference{Kind: "Pod", Name: name} }
	for _, tc := range []struct {
		name      string
		svc       *corev1.Service
		slices    []*discoveryv1.EndpointSlice
		ok        bool
		addresses []string
		endpoints []registry.Endpoint
		pods      []string
	}{
		{
			name: "dual stack, init container and label both mean a proxy",
			svc:  svc(nil),
			slices: []*discoveryv1.EndpointSlice{slice(discoveryv1.AddressTypeIPv4,
				discoveryv1.Endpoint{Addresses: []string{"10.1.0.1"}, TargetRef: podRef("p0")},
				discoveryv1.Endpoint{Addresses: []string{"10.1.0.2"}, TargetRef: podRef("p1")},
				discoveryv1.Endpoint{Addresses: []string{"10.1.0.3"}, TargetRef: podRef("gone")},
				discoveryv1.Endpoint{Addresses: []string{"10.1.0.4"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false)}},
			)},
			ok:        true,
			addresses: []string{"10.96.0.5", "fd00::5"},
			endpoints: []registry.Endpoint{
				{Address: "10.1.0.1:8080", Identity: "spiffe://td/ns/ns/sa/sa0", HasProxy: true, Workload: "ns/p0", Labels: map[string]string{"app": "a", registry.LabelTLSMode: registry.TLSModeIstio}},
				{Address: "10.1.0.2:8080", Identity: "spiffe://td/ns/ns/sa/default", HasProxy: true, Workload: "ns/p1", Labels: map[string]string{registry.LabelTLSMode: registry.TLSModeIstio}},
				{Address: "10.1.0.3:8080", Workload: "ns/gone"},
			},
			pods: []string{"ns/p0", "ns/p1", "ns/gone"},
		},
		{
			name: "headless, FQDN slices ignored",
			svc: svc(func(s *corev1.Service) {
				s.Spec.ClusterIP, s.Spec.ClusterIPs = corev1.ClusterIPNone, []string{corev1.ClusterIPNone}
			}),
			slices: []*discoveryv1.EndpointSlice{slice(discoveryv1.AddressTypeFQDN, discoveryv1.Endpoint{Addresses: []string{"x.example"}})},
			ok:     true,
		},
		{
			name:   "slice port the service lost",
			svc:    svc(func(s *corev1.Service) { s.Spec.Ports[0].Name = "other" }),
			slices: []*discoveryv1.EndpointSlice{slice(discoveryv1.AddressTypeIPv4, discoveryv1.Endpoint{Addresses: []string{"10.1.0.1"}})},
			ok:     true, addresses: []string{"10.96.0.5", "fd00::5"},
		},
		{
			name: "ExternalName is not routed",
			svc:  svc(func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeExternalName }),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, gotPods, ok := buildService(serviceInput{svc: tc.svc, slices: tc.slices, pod: func(k string) *corev1.Pod { return pods[k] }, trustDomain: "td", dnsDomain: "example.local"})
			if ok != tc.ok {
				t.Fatalf("ok = %v", ok)
			}
			if !ok {
				return
			}
			if got.Hostname != "a.ns.svc.example.local" || got.Namespace != "ns" {
				t.Errorf("hostname %s namespace %s", got.Hostname, got.Namespace)
			}
			if strings.Join(got.Addresses, ",") != strings.Join(tc.addresses, ",") {
				t.Errorf("addresses = %v, want %v", got.Addresses, tc.addresses)
			}
			if len(got.Endpoints) != len(tc.endpoints) {
				t.Fatalf("endpoints = %+v, want %+v", got.Endpoints, tc.endpoints)
			}
			for i, want := range tc.endpoints {
				g := got.Endpoints[i]
				if g.Address != want.Address || g.Identity != want.Identity || g.HasProxy != want.HasProxy || g.Workload != want.Workload || len(g.Labels) != len(want.Labels) {
					t.Errorf("endpoint %d = %+v, want %+v", i, g, want)
				}
				for k, v := range want.Labels {
					if g.Labels[k] != v {
						t.Errorf("endpoint %d label %s = %q, want %q", i, k, g.Labels[k], v)
					}
				}
			}
			if strings.Join(gotPods, ",") != strings.Join(tc.pods, ",") {
				t.Errorf("pods = %v, want %v", gotPods, tc.pods)
			}
		})
	}
}

func TestProtocolOf(t *testing.T) {
	for in, want := range map[string]string{"http": "HTTP", "HTTP2": "HTTP2", "kubernetes.io/h2c": "HTTP2", "grpc": "GRPC", "tcp": "TCP", "tls": "TLS", "https": "HTTPS", "redis": "REDIS", "example.com/custom": ""} {
		if got := protocolOf(in); got != want {
			t.Errorf("protocolOf(%q) = %q, want %q", in, got, want)
		}
	}
}
