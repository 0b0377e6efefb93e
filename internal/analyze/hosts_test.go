package analyze

import (
	"slices"
	"testing"
)

// TestHostCompletion: a host with a dot is taken as written, as Istio and
// zmesh's proxies (route.Host) take it; only a bare name is a Service of
// the resource's namespace.
func TestHostCompletion(t *testing.T) {
	svc := "apiVersion: v1\nkind: Service\nmetadata: {name: reviews, namespace: web}\nspec: {selector: {app: reviews}, ports: [{name: http, port: 80}]}"
	se := "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: legacy, namespace: web}\nspec: {hosts: [legacy.internal], location: MESH_INTERNAL, resolution: DNS, ports: [{number: 80, name: http, protocol: HTTP}]}"
	dr := func(host string) string {
		return "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: dr, namespace: web}\nspec: {host: " + host + "}"
	}
	vs := func(host string) string {
		return "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs, namespace: web}\nspec: {hosts: [front.example.com], http: [{route: [{destination: {host: " + host + "}}]}]}"
	}
	cases := []struct {
		name, code string
		docs       []string
		want       []string
	}{
		{"a ServiceEntry host with one dot is a known DestinationRule host", "IST0174", []string{svc, se, dr("legacy.internal")}, nil},
		{"a bare name is the namespace's Service", "IST0174", []string{svc, se, dr("reviews")}, nil},
		{"name.namespace is not completed", "IST0174", []string{svc, se, dr("reviews.web")},
			[]string{"Warning [IST0174] (DestinationRule web/dr) The host reviews.web defined in the DestinationRule does not match any services in the mesh."}},
		{"a ServiceEntry host with one dot is a known destination", "IST0101", []string{svc, se, vs("legacy.internal")}, nil},
		{"a destination name.namespace is not completed", "IST0101", []string{svc, se, vs("reviews.web")},
			[]string{`Error [IST0101] (VirtualService web/vs) Referenced host not found: "reviews.web"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := messagesOf(t, tc.code, false, tc.docs...); !slices.Equal(got, tc.want) {
				t.Errorf("got %q\nwant %q", got, tc.want)
			}
		})
	}
}

// TestMirrorReferences: a mirror is named as istioctl names it.
func TestMirrorReferences(t *testing.T) {
	docs := []string{
		"apiVersion: v1\nkind: Service\nmetadata: {name: reviews, namespace: web}\nspec: {selector: {app: reviews}, ports: [{name: http, port: 80}]}",
		"apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs, namespace: web}\nspec: {hosts: [reviews], http: [{route: [{destination: {host: reviews}}], mirrors: [{destination: {host: reviews, subset: shadow}}, {destination: {host: nowhere}}]}]}",
	}
	want := []string{
		`Error [IST0101] (VirtualService web/vs) Referenced mirror host not found: "nowhere"`,
		`Error [IST0101] (VirtualService web/vs) Referenced mirror+subset in destinationrule not found: "reviews+shadow"`,
	}
	if got := messagesOf(t, "IST0101", false, docs...); !slices.Equal(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
}
