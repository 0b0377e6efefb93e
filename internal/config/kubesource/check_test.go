package kubesource

import (
	"strings"
	"testing"
)

// TestCheckReadsAsTheSource: Check accepts what the source would keep,
// refuses what it would leave out, and passes kinds it does not read.
func TestCheckReadsAsTheSource(t *testing.T) {
	for _, tt := range []struct {
		name, object string
		read         bool
		err          string
	}{
		{"valid", `{"apiVersion":"security.istio.io/v1","kind":"AuthorizationPolicy","metadata":{"name":"a","namespace":"x"},"spec":{"action":"DENY","rules":[{}]}}`, true, ""},
		{"v1beta1 Sidecar", `{"apiVersion":"networking.istio.io/v1beta1","kind":"Sidecar","metadata":{"name":"a","namespace":"x"},"spec":{"egress":[{"hosts":["./*"]}]}}`, true, ""},
		{"invalid", `{"apiVersion":"security.istio.io/v1","kind":"AuthorizationPolicy","metadata":{"name":"a","namespace":"x"},"spec":{"action":"NOPE"}}`, true, "NOPE"},
		{"status and server metadata ignored", `{"apiVersion":"security.istio.io/v1","kind":"PeerAuthentication","metadata":{"name":"a","namespace":"x","uid":"u","resourceVersion":"7","managedFields":[{}]},"spec":{"mtls":{"mode":"STRICT"}},"status":{"anything":true}}`, true, ""},
		{"kind of another group", `{"apiVersion":"example.com/v1","kind":"AuthorizationPolicy","metadata":{"name":"a"}}`, false, ""},
		{"not read", `{"apiVersion":"extensions.istio.io/v1alpha1","kind":"WasmPlugin","metadata":{"name":"a","namespace":"x"},"spec":{}}`, false, ""},
		{"not an object", `"x"`, false, "decode"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			read, _, err := Check([]byte(tt.object))
			if read != tt.read {
				t.Errorf("read %v, want %v", read, tt.read)
			}
			if (err == nil) != (tt.err == "") || (err != nil && !strings.Contains(err.Error(), tt.err)) {
				t.Errorf("err %v, want %q", err, tt.err)
			}
		})
	}
}

// FuzzCheck: any bytes are read, refused or passed, never a panic; an
// object Check refuses is never also reported as not read.
func FuzzCheck(f *testing.F) {
	f.Add([]byte(`{"apiVersion":"security.istio.io/v1","kind":"AuthorizationPolicy","metadata":{"name":"a","namespace":"x"},"spec":{"rules":[{"from":[{"source":{"principals":["*"]}}]}]}}`))
	f.Add([]byte(`{"apiVersion":"networking.istio.io/v1","kind":"ServiceEntry","metadata":{"name":"a","namespace":"x"},"spec":{"hosts":["a.b"],"ports":[{"number":80,"name":"http","protocol":"HTTP"}]}}`))
	f.Add([]byte(`{"kind":"Gateway","apiVersion":"networking.istio.io/v1alpha3"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		read, _, err := Check(b)
		if !read && err != nil && !strings.Contains(err.Error(), "decode object") {
			t.Fatalf("not read, yet refused: %v", err)
		}
	})
}
