package meshdir

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadQuickstart(t *testing.T) {
	ws, err := Load("../../examples/quickstart")
	if err != nil {
		t.Fatal(err)
	}
	got := []string{}
	for _, w := range ws {
		got = append(got, w.Key()+"/"+w.ServiceAccount)
	}
	want := "web/frontend/frontend web/stranger/stranger api/backend/backend"
	if strings.Join(got, " ") != want {
		t.Fatalf("workloads = %v, want %s", got, want)
	}
}

func TestParseWorkloads(t *testing.T) {
	cases := []struct {
		name    string
		yaml    string
		wantErr string
		wantN   int
	}{
		{name: "istio documents are left to the control plane", yaml: "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: x}\n", wantN: 0},
		{name: "defaults namespace and service account", yaml: "apiVersion: zmesh.dev/v1alpha1\nkind: Workload\nmetadata: {name: a}\nspec: {command: [x]}\n", wantN: 1},
		{name: "unknown field is rejected", yaml: "apiVersion: zmesh.dev/v1alpha1\nkind: Workload\nmetadata: {name: a}\nspec: {command: [x], bogus: 1}\n", wantErr: "bogus"},
		{name: "unknown zmesh kind is rejected", yaml: "apiVersion: zmesh.dev/v1alpha1\nkind: Gadget\nmetadata: {name: a}\n", wantErr: "unknown zmesh kind"},
		{name: "command is required", yaml: "apiVersion: zmesh.dev/v1alpha1\nkind: Workload\nmetadata: {name: a}\nspec: {}\n", wantErr: "command"},
		{name: "names must be DNS labels", yaml: "apiVersion: zmesh.dev/v1alpha1\nkind: Workload\nmetadata: {name: A_b}\nspec: {command: [x]}\n", wantErr: "DNS label"},
		{name: "a gateway runs no app", yaml: "apiVersion: zmesh.dev/v1alpha1\nkind: Workload\nmetadata: {name: gw}\nspec: {gateway: {ports: {\"443\": \"127.0.0.1:8443\"}}}\n", wantN: 1},
		{name: "a gateway with a command is rejected", yaml: "apiVersion: zmesh.dev/v1alpha1\nkind: Workload\nmetadata: {name: gw}\nspec: {command: [x], gateway: {}}\n", wantErr: "runs no app"},
		{name: "a gateway port that is no number", yaml: "apiVersion: zmesh.dev/v1alpha1\nkind: Workload\nmetadata: {name: gw}\nspec: {gateway: {ports: {https: \"127.0.0.1:8443\"}}}\n", wantErr: "not a port number"},
		{name: "a gateway port's address without port", yaml: "apiVersion: zmesh.dev/v1alpha1\nkind: Workload\nmetadata: {name: gw}\nspec: {gateway: {ports: {\"443\": \"127.0.0.1\"}}}\n", wantErr: "not HOST:PORT"},
		{name: "a gateway's certificate file directories", yaml: "apiVersion: zmesh.dev/v1alpha1\nkind: Workload\nmetadata: {name: gw}\nspec: {gateway: {certFileDirs: [certs, /etc/gw]}}\n", wantN: 1},
		{name: "an empty certificate file directory", yaml: "apiVersion: zmesh.dev/v1alpha1\nkind: Workload\nmetadata: {name: gw}\nspec: {gateway: {certFileDirs: [\"\"]}}\n", wantErr: "empty directory"},
		{name: "malformed yaml", yaml: "apiVersion: [\n", wantErr: "document 0"},
		{name: "several documents", yaml: "apiVersion: zmesh.dev/v1alpha1\nkind: Workload\nmetadata: {name: a}\nspec: {command: [x]}\n---\n---\napiVersion: zmesh.dev/v1alpha1\nkind: Workload\nmetadata: {name: b}\nspec: {command: [x]}\n", wantN: 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ws, err := Parse([]byte(tc.yaml), "t.yaml")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(ws) != tc.wantN {
				t.Fatalf("got %d workloads, want %d", len(ws), tc.wantN)
			}
		})
	}
}

func TestLoadRejectsDuplicates(t *testing.T) {
	dir := t.TempDir()
	doc := "apiVersion: zmesh.dev/v1alpha1\nkind: Workload\nmetadata: {name: a, namespace: n}\nspec: {command: [x]}\n"
	for _, f := range []string{"a.yaml", "b.yml"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "declared twice") {
		t.Fatalf("err = %v, want duplicate error", err)
	}
}

func FuzzParseWorkloads(f *testing.F) {
	f.Add([]byte("apiVersion: zmesh.dev/v1alpha1\nkind: Workload\nmetadata: {name: a}\nspec: {command: [x]}\n"))
	f.Add([]byte("---\n--- \n"))
	f.Add([]byte("apiVersion: zmesh.dev/v1alpha1\nkind: Workload\nmetadata: {name: gw}\nspec: {gateway: {ports: {\"443\": \"127.0.0.1:8443\"}, credentialDir: c}}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ws, err := Parse(data, "fuzz")
		if err != nil {
			return
		}
		for _, w := range ws {
			if err := w.validate(); err != nil {
				t.Fatalf("returned invalid workload %+v: %v", w, err)
			}
			if w.Gateway == nil {
				continue
			}
			for n, addr := range w.Gateway.Ports {
				if _, _, err := net.SplitHostPort(addr); n == 0 || err != nil {
					t.Fatalf("gateway port %d at %q accepted", n, addr)
				}
			}
		}
	})
}
