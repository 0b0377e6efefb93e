package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/zmesh/zmesh/internal/ca"
	"github.com/zmesh/zmesh/internal/ca/catest"
)

func runCert(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := certCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestCertInspectFile(t *testing.T) {
	out, err := runCert(t, "inspect", "../../internal/certinfo/testdata/chain.pem", "--roots", "../../internal/certinfo/testdata/bundle.pem")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"spiffe://cluster.local/ns/foo/sa/httpbin", "ECDSA P-256", "chains to:  root 2 of 2 (CN=new root,O=cluster.local)"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestCertInspectAdmin(t *testing.T) {
	chain, _ := os.ReadFile("../../internal/certinfo/testdata/chain.pem")
	bundle, _ := os.ReadFile("../../internal/certinfo/testdata/bundle.pem")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/debug/certs" {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"spiffeId": "x", "chainPEM": string(chain), "bundlePEM": string(bundle)})
	}))
	defer srv.Close()
	out, err := runCert(t, "inspect", "--admin", strings.TrimPrefix(srv.URL, "http://"), "--json")
	if err != nil {
		t.Fatal(err)
	}
	var certs []struct {
		SPIFFEID string `json:"spiffeId"`
		Root     int    `json:"root"`
	}
	if err := json.Unmarshal([]byte(out), &certs); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if len(certs) != 2 || certs[0].SPIFFEID != "spiffe://cluster.local/ns/foo/sa/httpbin" || certs[0].Root != 2 {
		t.Errorf("certs = %+v", certs)
	}
}

func TestCertInspectUsage(t *testing.T) {
	if _, err := runCert(t, "inspect"); err == nil {
		t.Error("inspect with neither file nor --admin succeeded")
	}
}

func TestCARotateCommand(t *testing.T) {
	dir := t.TempDir()
	run := func(args ...string) (string, error) {
		cmd := caCmd()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs(args)
		err := cmd.Execute()
		return out.String(), err
	}
	if _, err := run("rotate", "--data-dir", dir, "--step", "prepare"); err == nil {
		t.Fatal("rotate of a dir without a CA succeeded")
	}
	if _, err := ca.Load(ca.Config{DataDir: dir, TrustDomain: catest.TrustDomain}); err != nil {
		t.Fatal(err)
	}
	out, err := run("rotate", "--data-dir", dir, "--step", "prepare")
	if err != nil || !strings.Contains(out, "phase: prepared") {
		t.Fatalf("prepare: %v\n%s", err, out)
	}
	if _, err := run("rotate", "--data-dir", dir, "--step", "activate"); err == nil {
		t.Fatal("activate right after prepare succeeded without --force")
	}
	for _, step := range []string{"activate", "retire"} {
		if out, err := run("rotate", "--data-dir", dir, "--step", step, "--force"); err != nil {
			t.Fatalf("%s: %v\n%s", step, err, out)
		}
	}
	out, err = run("status", "--data-dir", dir)
	if err != nil || !strings.Contains(out, "phase: steady") {
		t.Fatalf("status: %v\n%s", err, out)
	}
}
