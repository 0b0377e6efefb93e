package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const installGolden = "testdata/install-dry-run.golden"

// TestInstallDryRunGolden compares `zmesh install --dry-run` with the
// golden file (refresh with -update). Istio's CRDs, carried unchanged and
// large, appear in the golden file by name only; every other object in
// full.
func TestInstallDryRunGolden(t *testing.T) {
	cmd := installCmd()
	var out, errOut bytes.Buffer
	cmd.SetArgs([]string{"--dry-run", "--image", "zmesh/zmesh:test"})
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("%v: %s", err, errOut.String())
	}
	var golden strings.Builder
	docs := strings.Split(out.String(), "---\n")
	if docs[0] != "" {
		t.Fatalf("output does not start with a document separator: %q", docs[0])
	}
	for _, d := range docs[1:] {
		var obj struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(d), &obj); err != nil || obj.Kind == "" || obj.Metadata.Name == "" {
			t.Fatalf("document is not an object (%v):\n%s", err, d)
		}
		golden.WriteString("---\n")
		if obj.Kind == "CustomResourceDefinition" {
			golden.WriteString("# CustomResourceDefinition " + obj.Metadata.Name + "\n")
			continue
		}
		golden.WriteString(d)
	}
	got := golden.String()
	if *update {
		if err := os.WriteFile(installGolden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(installGolden)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if got != string(want) {
		t.Errorf("zmesh install --dry-run differs from %s (-update to refresh):\n%s", installGolden, got)
	}
}

func TestInstallNeedsKubeconfig(t *testing.T) {
	for _, c := range [][]string{{}, {"--purge"}} {
		cmd := uninstallCmd()
		if len(c) == 0 {
			cmd = installCmd()
		}
		cmd.SetArgs(c)
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetErr(&bytes.Buffer{})
		err := cmd.ExecuteContext(context.Background())
		if err == nil || !strings.Contains(err.Error(), "--kubeconfig is required") {
			t.Errorf("%s %v: err = %v", cmd.Name(), c, err)
		}
	}
}
