package config

import "testing"

func TestValidateDestinationRule(t *testing.T) {
	runValidateCases(t, "networking.istio.io/v1", KindDestinationRule, []validateCase{
		{name: "host only", spec: "host: reviews"},
		{name: "every host", spec: "host: '*'\ntrafficPolicy: {tls: {mode: ISTIO_MUTUAL}}"},
		{name: "wildcard host", spec: "host: '*.example.com'"},
		{name: "no host", spec: "trafficPolicy: {tls: {mode: DISABLE}}", wantErr: "host is required"},
		{name: "bad host", spec: "host: 'a b'", wantErr: "spec.host"},
		{name: "subsets", spec: "host: r\nsubsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]"},
		{name: "subset without name", spec: "host: r\nsubsets: [{labels: {version: v1}}]", wantErr: "subset name is required"},
		{name: "subset name twice", spec: "host: r\nsubsets: [{name: v1, labels: {a: b}}, {name: v1, labels: {a: c}}]", wantErr: `"v1" is used twice`},
		{name: "subset name not a DNS label", spec: "host: r\nsubsets: [{name: V_1, labels: {a: b}}]", wantErr: "must be a DNS label"},
		{name: "subset without labels", spec: "host: r\nsubsets: [{name: all}]", wantWarn: "selects every endpoint"},
		{name: "subset wildcard label", spec: "host: r\nsubsets: [{name: v1, labels: {version: '*'}}]", wantErr: "wildcard"},
		{name: "empty traffic policy", spec: "host: r\ntrafficPolicy: {}", wantErr: "at least one field"},
		{name: "empty subset traffic policy", spec: "host: r\nsubsets: [{name: v1, labels: {a: b}, trafficPolicy: {}}]", wantErr: "spec.subsets[0].trafficPolicy: traffic policy must have at least one field"},
		{name: "port level without port", spec: "host: r\ntrafficPolicy: {portLevelSettings: [{tls: {mode: DISABLE}}]}", wantErr: "port must be specified"},
		{name: "port level out of range", spec: "host: r\ntrafficPolicy: {portLevelSettings: [{port: {number: 70000}, tls: {mode: DISABLE}}]}", wantErr: "out of range"},
		{name: "port level twice", spec: "host: r\ntrafficPolicy: {portLevelSettings: [{port: {number: 80}, tls: {mode: DISABLE}}, {port: {number: 80}, tls: {mode: SIMPLE}}]}", wantErr: "port 80 has settings twice"},
		{name: "port level empty", spec: "host: r\ntrafficPolicy: {portLevelSettings: [{port: {number: 80}}]}", wantErr: "port traffic policy must have at least one field"},
		{name: "negative max connections", spec: "host: r\ntrafficPolicy: {connectionPool: {tcp: {maxConnections: -1}}}", wantErr: "maxConnections"},
		{name: "empty connection pool", spec: "host: r\ntrafficPolicy: {connectionPool: {}}", wantErr: "connectionPool: must have at least one field"},
		{name: "istio mutual", spec: "host: r\ntrafficPolicy: {tls: {mode: ISTIO_MUTUAL}}"},
		{name: "istio mutual with SAN and SNI", spec: "host: r\ntrafficPolicy: {tls: {mode: ISTIO_MUTUAL, sni: r.example, subjectAltNames: [spiffe://cluster.local/ns/a/sa/b]}}"},
		{name: "istio mutual with a client certificate", spec: "host: r\ntrafficPolicy: {tls: {mode: ISTIO_MUTUAL, clientCertificate: /c.pem}}", wantErr: "when mode is ISTIO_MUTUAL"},
		{name: "istio mutual with CA", spec: "host: r\ntrafficPolicy: {tls: {mode: ISTIO_MUTUAL, caCertificates: /ca.pem}}", wantErr: "when mode is ISTIO_MUTUAL"},
		{name: "istio mutual with credentialName", spec: "host: r\ntrafficPolicy: {tls: {mode: ISTIO_MUTUAL, credentialName: c}}", wantErr: "when mode is ISTIO_MUTUAL"},
		{name: "mutual with files", spec: "host: r\ntrafficPolicy: {tls: {mode: MUTUAL, clientCertificate: /c.pem, privateKey: /k.pem}}"},
		{name: "mutual without key", spec: "host: r\ntrafficPolicy: {tls: {mode: MUTUAL, clientCertificate: /c.pem}}", wantErr: "private key required"},
		{name: "mutual without anything", spec: "host: r\ntrafficPolicy: {tls: {mode: MUTUAL}}", wantErr: "client certificate required"},
		{name: "mutual with credentialName", spec: "host: r\ntrafficPolicy: {tls: {mode: MUTUAL, credentialName: client}}"},
		{name: "credentialName and files", spec: "host: r\ntrafficPolicy: {tls: {mode: MUTUAL, credentialName: client, clientCertificate: /c.pem}}", wantErr: "if credentialName is set"},
		{name: "simple", spec: "host: r\ntrafficPolicy: {tls: {mode: SIMPLE, caCertificates: /ca.pem, sni: r.example, subjectAltNames: [r.example]}}"},
		{name: "simple skip verify", spec: "host: r\ntrafficPolicy: {tls: {mode: SIMPLE, insecureSkipVerify: true}}"},
		{name: "simple skip verify with CA", spec: "host: r\ntrafficPolicy: {tls: {mode: SIMPLE, insecureSkipVerify: true, caCertificates: /ca.pem}}", wantErr: "insecureSkipVerify"},
		{name: "mutual skip verify with SAN", spec: "host: r\ntrafficPolicy: {tls: {mode: MUTUAL, insecureSkipVerify: true, clientCertificate: /c, privateKey: /k, subjectAltNames: [x]}}", wantErr: "insecureSkipVerify"},
		{name: "empty SAN", spec: "host: r\ntrafficPolicy: {tls: {mode: SIMPLE, subjectAltNames: ['']}}", wantErr: "empty value"},
		{name: "port level TLS checked", spec: "host: r\ntrafficPolicy: {portLevelSettings: [{port: {number: 443}, tls: {mode: MUTUAL}}]}", wantErr: "portLevelSettings[0].tls.clientCertificate"},
		{name: "subset TLS checked", spec: "host: r\nsubsets: [{name: v1, labels: {a: b}, trafficPolicy: {tls: {mode: ISTIO_MUTUAL, privateKey: /k}}}]", wantErr: "spec.subsets[0].trafficPolicy.tls"},
		{name: "disable with SNI", spec: "host: r\ntrafficPolicy: {tls: {mode: DISABLE, sni: x}}", wantWarn: "DISABLE ignores"},
		{name: "exportTo", spec: "host: r\nexportTo: ['.', bar]"},
		{name: "exportTo star alone", spec: "host: r\nexportTo: ['*', bar]", wantErr: `"*" must be alone`},
		{name: "exportTo twice", spec: "host: r\nexportTo: [bar, bar]", wantErr: "listed twice"},
		{name: "exportTo tilde", spec: "host: r\nexportTo: ['~']", wantErr: "export to none"},
		{name: "consistentHash without a key", spec: "host: r\ntrafficPolicy: {loadBalancer: {consistentHash: {minimumRingSize: 1024}}}", wantErr: "exactly one of"},
		{name: "consistentHash cookie without a name", spec: "host: r\ntrafficPolicy: {loadBalancer: {consistentHash: {httpCookie: {ttl: 10s}}}}", wantErr: "cookie name"},
		{name: "consistentHash cookie with ttl and path", spec: "host: r\ntrafficPolicy: {loadBalancer: {consistentHash: {httpCookie: {name: user, path: /app, ttl: 10s}}}}"},
		{name: "consistentHash cookie name not a token", spec: "host: r\ntrafficPolicy: {loadBalancer: {consistentHash: {httpCookie: {name: 'a=b', ttl: 10s}}}}", wantErr: "not a valid cookie name"},
		{name: "consistentHash cookie path adding an attribute", spec: "host: r\ntrafficPolicy: {loadBalancer: {consistentHash: {httpCookie: {name: user, path: '/; Domain=evil', ttl: 10s}}}}", wantErr: "httpCookie.path"},
		{name: "consistentHash cookie negative ttl", spec: "host: r\ntrafficPolicy: {loadBalancer: {consistentHash: {httpCookie: {name: user, ttl: -1s}}}}", wantErr: "must not be negative"},
		{name: "settings accepted but not applied", spec: "host: r\ntrafficPolicy: {tunnel: {targetHost: t, targetPort: 80}, connectionPool: {tcp: {tcpKeepalive: {probes: 3}}, http: {maxRetries: 3}}}", wantWarn: "tunnel, connectionPool.tcp.tcpKeepalive, connectionPool.http.maxRetries accepted but not applied"},
		{name: "port level settings accepted but not applied", spec: "host: r\ntrafficPolicy: {portLevelSettings: [{port: {number: 80}, loadBalancer: {localityLbSetting: {enabled: true}}}]}", wantWarn: "portLevelSettings[0]: loadBalancer.localityLbSetting accepted but not applied"},
		{name: "applied settings warn of nothing", spec: "host: r\ntrafficPolicy: {connectionPool: {tcp: {maxConnections: 10, connectTimeout: 1s}, http: {http1MaxPendingRequests: 5, maxRequestsPerConnection: 2}}, outlierDetection: {consecutiveGatewayErrors: 3}}"},
		{name: "workload selector", spec: "host: r\nworkloadSelector: {matchLabels: {app: a}}"},
		{name: "workload selector wildcard", spec: "host: r\nworkloadSelector: {matchLabels: {app: '*'}}", wantErr: "wildcard"},
	})
}

func TestDestinationRuleVersions(t *testing.T) {
	for _, v := range []string{"v1", "v1beta1", "v1alpha3"} {
		doc := "apiVersion: networking.istio.io/" + v + "\nkind: DestinationRule\nmetadata: {name: r}\nspec: {host: r, trafficPolicy: {tls: {mode: DISABLE}}}\n"
		rs, warnings, err := Parse([]byte(doc), "t.yaml")
		if err != nil || len(warnings) > 0 || len(rs) != 1 || rs[0].Kind != KindDestinationRule {
			t.Errorf("%s: %v %v %v", v, rs, warnings, err)
		}
	}
	// An unknown field is refused, not dropped: a TLS setting lost in
	// parsing would change what the proxy sends in the clear.
	_, _, err := Parse([]byte("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec: {host: r, trafficPolicy: {tls: {mode: SIMPLE, sniName: x}}}\n"), "t.yaml")
	if err == nil {
		t.Error("unknown field accepted")
	}
}

func TestExportedTo(t *testing.T) {
	for _, tc := range []struct {
		exportTo []string
		ns       string
		want     bool
	}{
		{nil, "other", true},
		{[]string{"*"}, "other", true},
		{[]string{"."}, "own", true},
		{[]string{"."}, "other", false},
		{[]string{"other"}, "other", true},
		{[]string{"other"}, "third", false},
		{[]string{"other"}, "own", false},
		{[]string{".", "other"}, "other", true},
	} {
		if got := ExportedTo(tc.exportTo, "own", tc.ns); got != tc.want {
			t.Errorf("ExportedTo(%q, own, %s) = %v, want %v", tc.exportTo, tc.ns, got, tc.want)
		}
	}
}
