package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runAnalyze(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := analyzeCmd()
	var out, errOut bytes.Buffer
	cmd.SetArgs(args)
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.ExecuteContext(context.Background())
	var ee *exitError
	switch {
	case err == nil:
		code = 0
	case errors.As(err, &ee):
		code = ee.code
		if ee.err != nil {
			errOut.WriteString(ee.err.Error())
		}
	default:
		code = 1
		errOut.WriteString(err.Error())
	}
	return out.String(), errOut.String(), code
}

// TestAnalyzeContract pins DESIGN §5: the text line, the JSON fields, and
// the exit codes (0 clean, 79 for Warning or above, also with a directory
// and stdin), and that Info alone exits 0.
func TestAnalyzeContract(t *testing.T) {
	const denyAll = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-all, namespace: foo}
spec:
  action: DENY
  rules:
  - from:
    - source: {namespaces: ["bar"]}
`
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "p.yaml"), []byte(denyAll), 0o600); err != nil {
		t.Fatal(err)
	}
	want := `Error [IST0101] (AuthorizationPolicy foo/deny-all) Referenced namespace not found: "bar"` + "\n"
	for _, args := range [][]string{{"-f", dir}, {"-f", filepath.Join(dir, "p.yaml")}, {"-f", "-"}} {
		out, errOut, code := runAnalyze(t, denyAll, args...)
		if out != want || code != 79 {
			t.Errorf("%v: out=%q code=%d stderr=%q, want %q and 79", args, out, code, errOut, want)
		}
	}
	out, _, code := runAnalyze(t, denyAll, "-f", "-", "-o", "json")
	var msgs []map[string]string
	if err := json.Unmarshal([]byte(out), &msgs); err != nil || code != 79 {
		t.Fatalf("json: %v, code %d: %s", err, code, out)
	}
	if len(msgs) != 1 || msgs[0]["code"] != "IST0101" || msgs[0]["level"] != "Error" ||
		msgs[0]["resource"] != "AuthorizationPolicy foo/deny-all" || msgs[0]["message"] != `Referenced namespace not found: "bar"` {
		t.Errorf("json = %v", msgs)
	}

	out, _, code = runAnalyze(t, "", "-f", "../../examples/quickstart")
	if out != "" || code != 0 {
		t.Errorf("quickstart: out=%q code=%d, want nothing and 0", out, code)
	}
	out, _, code = runAnalyze(t, "", "-f", "../../examples/quickstart", "-o", "json")
	if strings.TrimSpace(out) != "[]" || code != 0 {
		t.Errorf("quickstart json: out=%q code=%d, want [] and 0", out, code)
	}
	// Info only (a port name Istio cannot read): reported, exit 0.
	svc := "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: a}\nspec: {ports: [{name: foo, port: 8000}]}\n"
	out, _, code = runAnalyze(t, svc, "-f", "-")
	if !strings.HasPrefix(out, "Info [IST0118] (Service a/s)") || code != 0 {
		t.Errorf("info only: out=%q code=%d, want IST0118 and 0", out, code)
	}
}

// TestAnalyzeMeshConfig: the mesh config changes what is found (an alias
// makes a principal's trust domain the mesh's own).
func TestAnalyzeMeshConfig(t *testing.T) {
	policy := "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: a}\nspec:\n  rules:\n  - from:\n    - source: {principals: [old.example/ns/a/sa/b]}\n"
	out, _, code := runAnalyze(t, policy, "-f", "-")
	if !strings.Contains(out, "[ZM0005]") || code != 79 {
		t.Fatalf("without alias: out=%q code=%d", out, code)
	}
	mc := filepath.Join(t.TempDir(), "mesh.yaml")
	if err := os.WriteFile(mc, []byte("trustDomainAliases: [old.example]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, code = runAnalyze(t, policy, "-f", "-", "--mesh-config", mc)
	if out != "" || code != 0 {
		t.Errorf("with alias: out=%q code=%d, want nothing and 0", out, code)
	}
}

// TestAnalyzeBadInput: what cannot be read is exit 2 with a message, never
// a crash; --kubernetes outside a cluster and without --kubeconfig says
// what it lacks.
func TestAnalyzeBadInput(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"-f", "/nonexistent/x.yaml"},
		{"-f", "-", "-o", "yaml"},
		{"--kubernetes"},
		{"-f", "-", "--mesh-config", "/nonexistent"},
	} {
		_, errOut, code := runAnalyze(t, "", args...)
		if code != 2 || errOut == "" {
			t.Errorf("%v: code=%d stderr=%q, want 2 and a message", args, code, errOut)
		}
	}
	_, errOut, _ := runAnalyze(t, "", "--kubernetes")
	if !strings.Contains(errOut, "in-cluster") {
		t.Errorf("--kubernetes: %q", errOut)
	}
}
