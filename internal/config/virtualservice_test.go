package config

import (
	"os"
	"strings"
	"testing"

	networking "istio.io/api/networking/v1alpha3"
)

func TestValidateVirtualService(t *testing.T) {
	runValidateCases(t, "networking.istio.io/v1", KindVirtualService, []validateCase{
		{name: "weighted split", spec: "hosts: [reviews]\nhttp:\n- route:\n  - {destination: {host: reviews-v1}, weight: 80}\n  - {destination: {host: reviews-v2, port: {number: 9080}}, weight: 20}\n"},
		{name: "every HTTP feature", spec: `hosts: [reviews.foo.svc.cluster.local]
gateways: [mesh]
exportTo: [".", bar]
http:
- name: r
  match:
  - uri: {prefix: /api}
    method: {exact: GET}
    headers: {x-user: {regex: "a.*"}}
    withoutHeaders: {x-test: {exact: "1"}}
    queryParams: {v: {exact: "2"}}
    port: 9080
    sourceLabels: {app: web}
    sourceNamespace: web
  rewrite: {uri: /v2, authority: other}
  timeout: 2s
  retries: {attempts: 3, perTryTimeout: 0.5s, retryOn: "5xx,gateway-error,connect-failure,retriable-4xx,reset,503"}
  mirror: {host: reviews-v2}
  mirrorPercentage: {value: 25}
  headers:
    request: {set: {x-a: b}, add: {x-c: d}, remove: [x-e]}
    response: {set: {x-f: g}}
  route: [{destination: {host: reviews, subset: v1}}]
- fault: {abort: {httpStatus: 503, percentage: {value: 10}}, delay: {fixedDelay: 1s, percentage: {value: 5}}}
  route: [{destination: {host: reviews}}]
- redirect: {uri: /new, authority: x.example.com, redirectCode: 302}
- directResponse: {status: 418, body: {string: teapot}}
`},
		{name: "no hosts", spec: "http: [{route: [{destination: {host: a}}]}]\n", wantErr: "at least one host"},
		{name: "wildcard host for sidecars", spec: "hosts: ['*']\nhttp: [{route: [{destination: {host: a}}]}]\n", wantErr: "wildcard host"},
		{name: "wildcard host for a gateway only", spec: "hosts: ['*']\ngateways: [ingress]\nhttp: [{route: [{destination: {host: a}}]}]\n"},
		{name: "no routes", spec: "hosts: [a]\n", wantErr: "http, tcp or tls"},
		{name: "route and redirect", spec: "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], redirect: {uri: /x}}]\n", wantErr: "only one of route, redirect"},
		{name: "nothing to do", spec: "hosts: [a]\nhttp: [{match: [{uri: {exact: /}}]}]\n", wantErr: "one of route, redirect"},
		{name: "negative weight", spec: "hosts: [a]\nhttp: [{route: [{destination: {host: a}, weight: -1}]}]\n", wantErr: "must not be negative"},
		{name: "all weights zero", spec: "hosts: [a]\nhttp: [{route: [{destination: {host: a}}, {destination: {host: b}}]}]\n", wantErr: "weight above 0"},
		{name: "bad regex", spec: "hosts: [a]\nhttp: [{match: [{uri: {regex: '('}}], route: [{destination: {host: a}}]}]\n", wantErr: "not a valid RE2"},
		{name: "empty string match", spec: "hosts: [a]\nhttp: [{match: [{uri: {}}], route: [{destination: {host: a}}]}]\n", wantErr: "one of exact, prefix or regex"},
		{name: "query prefix", spec: "hosts: [a]\nhttp: [{match: [{queryParams: {q: {prefix: x}}}], route: [{destination: {host: a}}]}]\n", wantErr: "prefix match is not supported"},
		{name: "bad retryOn", spec: "hosts: [a]\nhttp: [{retries: {attempts: 1, retryOn: 'sometimes'}, route: [{destination: {host: a}}]}]\n", wantErr: "not a retry condition"},
		{name: "tiny per-try timeout", spec: "hosts: [a]\nhttp: [{retries: {attempts: 1, perTryTimeout: 0.0001s}, route: [{destination: {host: a}}]}]\n", wantErr: "minimum of 1ms"},
		{name: "abort status out of range", spec: "hosts: [a]\nhttp: [{fault: {abort: {httpStatus: 700}}, route: [{destination: {host: a}}]}]\n", wantErr: "not in 200..599"},
		{name: "exponential delay", spec: "hosts: [a]\nhttp: [{fault: {delay: {exponentialDelay: 1s}}, route: [{destination: {host: a}}]}]\n", wantErr: "exponentialDelay: not supported"},
		{name: "mirror percentage above 100", spec: "hosts: [a]\nhttp: [{mirror: {host: b}, mirrorPercentage: {value: 101}, route: [{destination: {host: a}}]}]\n", wantErr: "not in 0..100"},
		{name: "mirror and mirrors", spec: "hosts: [a]\nhttp: [{mirror: {host: b}, mirrors: [{destination: {host: c}}], route: [{destination: {host: a}}]}]\n", wantErr: "only one of mirror or mirrors"},
		{name: "forged identity header", spec: "hosts: [a]\nhttp: [{headers: {request: {set: {X-Forwarded-Client-Cert: x}}}, route: [{destination: {host: a}}]}]\n", wantErr: "set by the proxies"},
		{name: "redirect code not 3xx", spec: "hosts: [a]\nhttp: [{redirect: {uri: /x, redirectCode: 200}}]\n", wantErr: "not a 3xx"},
		{name: "wildcard destination", spec: "hosts: [a]\nhttp: [{route: [{destination: {host: '*.example.com'}}]}]\n", wantErr: "cannot be a wildcard"},
		{name: "delegate", spec: "hosts: [a]\nhttp: [{delegate: {name: b}}]\n", wantErr: "delegation is not supported"},
		{name: "exportTo star and more", spec: "exportTo: ['*', '.']\nhosts: [a]\nhttp: [{route: [{destination: {host: a}}]}]\n", wantErr: "must be alone"},
		{name: "tcp and tls routes", spec: "hosts: [a]\ntcp: [{match: [{port: 9000, destinationSubnets: [10.0.0.0/8]}], route: [{destination: {host: a}, weight: 50}, {destination: {host: b}, weight: 50}]}]\ntls: [{match: [{sniHosts: [a.example.com], port: 443}], route: [{destination: {host: a}}]}]\n"},
		{name: "tls route without sniHosts", spec: "hosts: [a]\ntls: [{match: [{port: 443}], route: [{destination: {host: a}}]}]\n", wantErr: "sniHosts: at least one"},
		{name: "tcp route without destination", spec: "hosts: [a]\ntcp: [{match: [{port: 1}]}]\n", wantErr: "at least one destination"},
		{name: "tcp bad subnet", spec: "hosts: [a]\ntcp: [{match: [{destinationSubnets: [10.0.0.0/99]}], route: [{destination: {host: a}}]}]\n", wantErr: "bad CIDR"},
		{name: "cors warns", spec: "hosts: [a]\nhttp: [{corsPolicy: {allowOrigins: [{exact: x}]}, route: [{destination: {host: a}}]}]\n", wantWarn: "corsPolicy: not enforced"},
	})
}

func TestVirtualServiceEveryVersion(t *testing.T) {
	for _, v := range []string{"v1", "v1beta1", "v1alpha3"} {
		doc := "apiVersion: networking.istio.io/" + v + "\nkind: VirtualService\nmetadata: {name: r, namespace: foo}\nspec: {hosts: [a], http: [{route: [{destination: {host: a}}]}]}\n"
		rs, ws, err := Parse([]byte(doc), "vs.yaml")
		if err != nil || len(ws) != 0 || len(rs) != 1 {
			t.Fatalf("%s: Parse = %v, %v, %v", v, rs, ws, err)
		}
		if _, ok := rs[0].Spec.(*networking.VirtualService); !ok || rs[0].Kind != KindVirtualService {
			t.Errorf("%s: parsed into %s %T", v, rs[0].Kind, rs[0].Spec)
		}
	}
}

// TestReloadRejectsBadVirtualServiceAlone: a bad edit of one
// VirtualService keeps its last good version and lets the others apply.
func TestReloadRejectsBadVirtualServiceAlone(t *testing.T) {
	good := "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r, namespace: foo}\nspec: {hosts: [a], http: [{route: [{destination: {host: a-v1}}]}]}\n"
	bad := "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r, namespace: foo}\nspec: {hosts: [a], http: [{route: [{destination: {host: a-v2}, weight: -5}]}]}\n"
	other := "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: s, namespace: foo}\nspec: {hosts: [b], http: [{route: [{destination: {host: b}}]}]}\n"
	prev, _, rej := Reload(nil, map[string][]byte{"vs.yaml": []byte(good)}, nil)
	if len(rej) != 0 {
		t.Fatalf("first load rejected %v", rej)
	}
	snap, _, rej := Reload(prev, map[string][]byte{"vs.yaml": []byte(bad + "---\n" + other)}, nil)
	if len(rej) != 1 || !rej[0].Kept || !strings.Contains(rej[0].Error(), "must not be negative") {
		t.Fatalf("rejected = %v, want the bad VirtualService, kept", rej)
	}
	list := snap.List(KindVirtualService)
	if len(list) != 2 {
		t.Fatalf("in force: %v", list)
	}
	if got := list[0].Spec.(*networking.VirtualService).GetHttp()[0].GetRoute()[0].GetDestination().GetHost(); list[0].Name != "r" || got != "a-v1" {
		t.Errorf("foo/r routes to %q, want the last good a-v1", got)
	}
}

func TestVirtualServiceExportedTo(t *testing.T) {
	cases := []struct {
		exportTo   []string
		ns, client string
		want       bool
	}{
		{nil, "a", "b", true},
		{[]string{"*"}, "a", "b", true},
		{[]string{"."}, "a", "a", true},
		{[]string{"."}, "a", "b", false},
		{[]string{"b"}, "a", "b", true},
		{[]string{".", "c"}, "a", "b", false},
	}
	for _, c := range cases {
		if got := ExportedTo(c.exportTo, c.ns, c.client); got != c.want {
			t.Errorf("ExportedTo(%v, %s, %s) = %v, want %v", c.exportTo, c.ns, c.client, got, c.want)
		}
	}
}

func TestVirtualServiceTestdata(t *testing.T) {
	data, err := os.ReadFile("testdata/virtualservice.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rs, ws, err := Parse(data, "virtualservice.yaml")
	if err != nil || len(ws) != 0 || len(rs) != 1 {
		t.Fatalf("Parse = %v, %v, %v", rs, ws, err)
	}
	if err := Validate(rs[0]); err != nil {
		t.Errorf("Validate: %v", err)
	}
}
