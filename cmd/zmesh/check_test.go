package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zmesh/zmesh/internal/check"
	"github.com/zmesh/zmesh/internal/check/conformance"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

const (
	conformanceDir = "../../internal/check/testdata/conformance"
	checkGolden    = "testdata/check-conformance.golden"
)

// runCheck runs `zmesh check` in-process with args and the request on
// stdin, as main would.
func runCheck(t *testing.T, request []byte, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := checkCmd()
	var out, errOut bytes.Buffer
	cmd.SetArgs(args)
	cmd.SetIn(bytes.NewReader(request))
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err = cmd.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

// writeConfig writes resources as the one file of a new config directory.
func writeConfig(t *testing.T, resources string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "resources.yaml"), []byte(resources), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestCheckConformance runs the whole conformance suite through the CLI:
// each request's output must be one JSON line carrying the expected
// decision, stage, policy and mode, and the lines must equal the golden
// file (go test ./cmd/zmesh -run TestCheckConformance -update rewrites
// it). Resources that must not load must exit 2 with the expected message.
func TestCheckConformance(t *testing.T) {
	files, err := conformance.Load(conformanceDir)
	if err != nil {
		t.Fatal(err)
	}
	var golden bytes.Buffer
	for _, f := range files {
		dir := writeConfig(t, f.Resources)
		base := append([]string{"--config", dir, "--request", "-"}, f.Options.Args()...)
		if f.Error != "" {
			t.Run(f.Name, func(t *testing.T) {
				req := []byte(`{"workload":{"namespace":"foo"},"request":{"port":8000}}`)
				stdout, _, err := runCheck(t, req, base...)
				var ee *exitError
				if !errors.As(err, &ee) || ee.code != 2 || !strings.Contains(err.Error(), f.Error) {
					t.Fatalf("got error %v, want exit 2 with %q\ncite: %s", err, f.Error, f.Cite)
				}
				if stdout != "" {
					t.Errorf("stdout %q, want nothing", stdout)
				}
			})
			fmt.Fprintf(&golden, "%s exit 2\n", f.Name)
			continue
		}
		for i := range f.Requests {
			r := &f.Requests[i]
			name := f.Name + "/" + r.Name
			stdout, stderr, err := runCheck(t, r.Request, base...)
			fmt.Fprintf(&golden, "%s %s", name, stdout)
			t.Run(name, func(t *testing.T) {
				if err != nil {
					t.Fatalf("zmesh check: %v (stderr %q)", err, stderr)
				}
				if strings.Count(stdout, "\n") != 1 || !strings.HasSuffix(stdout, "\n") {
					t.Fatalf("want one JSON line, got %q", stdout)
				}
				dec := json.NewDecoder(strings.NewReader(stdout))
				dec.DisallowUnknownFields()
				var out check.Output
				if err := dec.Decode(&out); err != nil {
					t.Fatalf("output %q: %v", stdout, err)
				}
				diff := r.Expect.Mismatch(out)
				switch {
				case r.KnownIssue != "" && diff == "":
					t.Fatalf("passes now: remove knownIssue %q", r.KnownIssue)
				case r.KnownIssue != "":
					t.Skipf("known issue: %s (%s)", r.KnownIssue, diff)
				case diff != "":
					t.Errorf("%s\noutput: %s\ncite: %s", diff, stdout, f.Citation(r))
				}
			})
		}
	}
	if *update {
		if err := os.MkdirAll(filepath.Dir(checkGolden), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(checkGolden, golden.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(checkGolden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got := golden.String(); got != string(want) {
		t.Errorf("output differs from %s (run with -update to accept):\n%s", checkGolden, lineDiff(string(want), got))
	}
}

// lineDiff lists the lines of want and got that differ, by position.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "-%s\n+%s\n", wl, gl)
		}
	}
	return b.String()
}

const (
	denyAllYAML = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: deny-all
  namespace: foo
spec:
  action: DENY
  rules:
  - {}
`
	getRequest = `{"workload":{"namespace":"foo","labels":{"app":"httpbin"}},"source":{"principal":"cluster.local/ns/bar/sa/sleep"},"request":{"port":8000,"method":"GET","path":"/"}}`
)

// TestCheckExitCodes runs the real main in a child process, so that exit
// codes and stderr are those a script sees.
func TestCheckExitCodes(t *testing.T) {
	good := writeConfig(t, denyAllYAML)
	badField := writeConfig(t, strings.Replace(denyAllYAML, "action: DENY", "action: DENY\n  actoin: ALLOW", 1))
	badValue := writeConfig(t, strings.Replace(denyAllYAML, "- {}", "- from:\n    - source:\n        ipBlocks: [\"10.0.0.300\"]", 1))
	yamlRequest := filepath.Join(t.TempDir(), "request.yaml")
	if err := os.WriteFile(yamlRequest, []byte("workload: {namespace: foo}\nsource: {ip: 10.1.2.3}\nrequest: {port: 5432}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		args   []string
		stdin  string
		code   int
		stdout string // exact, for exit 0
		stderr string // substring, for exit 2
	}{
		{
			name:   "decision-is-exit-0",
			args:   []string{"check", "--config", good, "--request", "-"},
			stdin:  getRequest,
			stdout: `{"decision":"DENY","stage":"authorization","policy":"foo/deny-all","reason":"denied by policy foo/deny-all rule 0","peerAuthentication":{"mode":"PERMISSIVE"},"rule":0,"status":403}` + "\n",
		},
		{
			name:   "yaml-request-file-tcp",
			args:   []string{"check", "--config", good, "--request", yamlRequest},
			stdout: `{"decision":"DENY","stage":"authorization","policy":"foo/deny-all","reason":"denied by policy foo/deny-all rule 0","peerAuthentication":{"mode":"PERMISSIVE"},"rule":0}` + "\n",
		},
		{name: "unknown-field-in-resource", args: []string{"check", "--config", badField, "--request", "-"}, stdin: getRequest, code: 2, stderr: "actoin"},
		{name: "invalid-value-in-resource", args: []string{"check", "--config", badValue, "--request", "-"}, stdin: getRequest, code: 2, stderr: "10.0.0.300"},
		{name: "missing-config-dir", args: []string{"check", "--config", filepath.Join(good, "nope"), "--request", "-"}, stdin: getRequest, code: 2, stderr: "no such file"},
		{name: "malformed-request", args: []string{"check", "--config", good, "--request", "-"}, stdin: `{"workload": [`, code: 2, stderr: "check: request:"},
		{name: "unknown-field-in-request", args: []string{"check", "--config", good, "--request", "-"}, stdin: `{"workload":{"namespace":"foo"},"request":{"port":80,"verb":"GET"}}`, code: 2, stderr: `unknown field "verb"`},
		{name: "request-without-namespace", args: []string{"check", "--config", good, "--request", "-"}, stdin: `{"request":{"port":80}}`, code: 2, stderr: "workload.namespace is required"},
		{name: "tls-without-principal", args: []string{"check", "--config", good, "--request", "-"}, stdin: `{"workload":{"namespace":"foo"},"tls":true,"request":{"port":80}}`, code: 2, stderr: "source.principal is empty"},
		{name: "invalid-source-ip", args: []string{"check", "--config", good, "--request", "-"}, stdin: `{"workload":{"namespace":"foo"},"source":{"ip":"10.0.0.256"},"request":{"port":80}}`, code: 2, stderr: "source.ip"},
		{name: "missing-request-flag", args: []string{"check", "--config", good}, code: 2, stderr: "--request and one of --config or --kubeconfig are required"},
		{name: "unknown-flag", args: []string{"check", "--config", good, "--request", "-", "--trust-domian", "x"}, stdin: getRequest, code: 2, stderr: "unknown flag: --trust-domian"},
		{name: "bad-path-normalization", args: []string{"check", "--config", good, "--request", "-", "--path-normalization", "MERGE"}, stdin: getRequest, code: 2, stderr: "unknown path normalization"},
		{name: "stray-argument", args: []string{"check", "--config", good, "--request", "-", "extra"}, stdin: getRequest, code: 2, stderr: `unexpected argument "extra"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := runMain(t, tc.stdin, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d (stdout %q, stderr %q)", code, tc.code, stdout, stderr)
			}
			if tc.code == 0 {
				if stdout != tc.stdout {
					t.Errorf("stdout\n got %s want %s", stdout, tc.stdout)
				}
				if stderr != "" {
					t.Errorf("stderr %q, want nothing", stderr)
				}
				return
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
			if !strings.HasPrefix(stderr, "zmesh: ") || !strings.Contains(stderr, tc.stderr) || strings.Count(stderr, "\n") != 1 {
				t.Errorf("stderr %q, want one line \"zmesh: ...%s...\"", stderr, tc.stderr)
			}
		})
	}
}

// helperEnv makes the test binary run main instead of the tests (see
// TestCheckMainHelper).
const helperEnv = "ZMESH_CHECK_TEST_MAIN"

// runMain runs main in a child process (the test binary re-executed) with
// args, and returns its output and exit code.
func runMain(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^TestCheckMainHelper$", "--"}, args...)...)
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatal(err)
	}
	return out.String(), errOut.String(), code
}

// TestCheckMainHelper is not a test: in the child process runMain starts,
// it runs main with the arguments after "--".
func TestCheckMainHelper(t *testing.T) {
	if os.Getenv(helperEnv) != "1" {
		t.Skip("helper process for TestCheckExitCodes")
	}
	args := os.Args
	for i, a := range args {
		if a == "--" {
			args = args[i+1:]
			break
		}
	}
	os.Args = append([]string{"zmesh"}, args...)
	main()
	os.Exit(0)
}

// TestCheckHelpDocumentsRequest: --help shows every field of the request
// file, and its example request parses.
func TestCheckHelpDocumentsRequest(t *testing.T) {
	for _, field := range []string{"workload:", "source:", "principal:", "tls:", "request:", "port:", "method:", "headers:", "jwt:", "auth:", "claims:", "connection:", "sni:"} {
		if !strings.Contains(checkLong, field) {
			t.Errorf("zmesh check --help does not document %s", field)
		}
	}
	i := strings.Index(checkLong, "<<EOF\n")
	j := strings.Index(checkLong, "\n  EOF")
	if i < 0 || j < i {
		t.Fatal("no example request in --help")
	}
	var lines []string
	for _, l := range strings.Split(checkLong[i+6:j], "\n") {
		lines = append(lines, strings.TrimPrefix(l, "  "))
	}
	if _, err := check.ParseInput([]byte(strings.Join(lines, "\n"))); err != nil {
		t.Errorf("the example request does not parse: %v", err)
	}
}
