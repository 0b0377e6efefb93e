// Package conformance reads zmesh's Istio conformance suite: case files of
// plain Istio resources and `zmesh check` requests, each request with the
// decision Istio's documentation says it must get and a citation of the
// rule it checks. The suite lives in internal/check/testdata/conformance;
// the tests of internal/check run every case through check.Evaluate, and
// those of cmd/zmesh run a subset through the real CLI.
//
// A case file (NNN-short-name.yaml) holds:
//
//	cite: Authorization Policy reference, "...": the rule, in our words
//	options: {rootNamespace: istio-system, trustDomain: cluster.local,
//	          trustDomainAliases: [...], pathNormalization: BASE}
//	resources: |
//	  apiVersion: security.istio.io/v1
//	  kind: AuthorizationPolicy
//	  ...
//	error: text      # instead of requests: loading the resources must fail
//	requests:
//	- name: get-admin
//	  cite: ...      # optional, when the request checks a rule of its own
//	  request: {...} # DESIGN §5 request file
//	  expect: {decision: DENY, stage: authorization, policy: foo/deny-admin,
//	           peerAuthentication: {mode: PERMISSIVE}}
//	  knownIssue: ... # optional: zmesh disagrees with Istio here; reported as a skip
//
// Text of the form {{NAME}} is replaced, before the file is parsed, by the
// value NAME has in vars.yaml (the JWT key set and tokens).
package conformance

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/zmesh/zmesh/internal/check"
)

// File is one case file: a set of resources and the requests decided
// against it.
type File struct {
	// Name is the file name without extension ("012-deny-before-allow").
	Name string `json:"-"`
	// Cite names the Istio documentation page and the rule the file
	// checks; a request may cite a rule of its own.
	Cite    string  `json:"cite"`
	Options Options `json:"options"`
	// Resources is a YAML stream of Istio resources, as `kubectl apply`
	// would take it.
	Resources string `json:"resources"`
	// Error, when set, says that loading Resources must fail with an error
	// containing it; the file then has no requests.
	Error    string    `json:"error"`
	Requests []Request `json:"requests"`
}

// Options are the mesh settings of a file, as `zmesh check` flags.
type Options struct {
	RootNamespace      string   `json:"rootNamespace"`
	TrustDomain        string   `json:"trustDomain"`
	TrustDomainAliases []string `json:"trustDomainAliases"`
	PathNormalization  string   `json:"pathNormalization"`
}

// Args returns the `zmesh check` flags for o.
func (o Options) Args() []string {
	var args []string
	if o.RootNamespace != "" {
		args = append(args, "--root-namespace", o.RootNamespace)
	}
	if o.TrustDomain != "" {
		args = append(args, "--trust-domain", o.TrustDomain)
	}
	for _, a := range o.TrustDomainAliases {
		args = append(args, "--trust-domain-alias", a)
	}
	if o.PathNormalization != "" {
		args = append(args, "--path-normalization", o.PathNormalization)
	}
	return args
}

// Request is one request of a file and the answer expected for it.
type Request struct {
	Name string `json:"name"`
	Cite string `json:"cite"`
	// Request is the request file of `zmesh check`, as JSON.
	Request json.RawMessage `json:"request"`
	Expect  Expect          `json:"expect"`
	// KnownIssue, when set, says why zmesh does not give Istio's answer
	// yet; runners report the request as skipped with this reason.
	KnownIssue string `json:"knownIssue"`
}

// Expect is the part of `zmesh check`'s output a request is checked
// against. Stage and Policy are compared even when empty. Rule, Status,
// Audit and DryRun are compared only when set (Status 0: no HTTP answer,
// as for an allowed request or a TCP connection).
type Expect struct {
	Decision           string `json:"decision"`
	Stage              string `json:"stage"`
	Policy             string `json:"policy"`
	PeerAuthentication struct {
		Mode string `json:"mode"`
	} `json:"peerAuthentication"`
	Rule   *int    `json:"rule"`
	Status *int    `json:"status"`
	Audit  *string `json:"audit"`
	DryRun *struct {
		Decision string `json:"decision"`
		Policy   string `json:"policy"`
	} `json:"dryRun"`
}

// Citation is what a failure message quotes: the request's rule, else the
// file's.
func (f *File) Citation(r *Request) string {
	if r != nil && r.Cite != "" {
		return r.Cite
	}
	return f.Cite
}

var (
	fileName = regexp.MustCompile(`^\d{3}-[a-z0-9-]+\.yaml$`)
	varRef   = regexp.MustCompile(`\{\{([A-Z0-9_]+)\}\}`)
)

// Load reads every case file of dir (NNN-name.yaml; other *.yaml names are
// errors, other files are skipped), in name order,
// substituting the variables of dir/vars.yaml. Case files are decoded
// strictly: an unknown field is an error, so a typo cannot turn a check
// off.
func Load(dir string) ([]*File, error) {
	vars := map[string]string{}
	if data, err := os.ReadFile(filepath.Join(dir, "vars.yaml")); err == nil {
		if err := yaml.UnmarshalStrict(data, &vars); err != nil {
			return nil, fmt.Errorf("conformance: vars.yaml: %w", err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("conformance: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("conformance: %w", err)
	}
	var files []*File
	for _, e := range entries {
		if e.Name() == "vars.yaml" || e.IsDir() || !strings.HasSuffix(e.Name(), ".yaml") {
			continue
		}
		if !fileName.MatchString(e.Name()) {
			return nil, fmt.Errorf("conformance: %s: case files are named NNN-short-name.yaml", e.Name())
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("conformance: %w", err)
		}
		f, err := Parse(data, vars)
		if err != nil {
			return nil, fmt.Errorf("conformance: %s: %w", e.Name(), err)
		}
		f.Name = strings.TrimSuffix(e.Name(), ".yaml")
		files = append(files, f)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Name < files[j].Name })
	return files, nil
}

// Parse decodes one case file, substituting vars, and checks that it is
// complete: a citation, resources or an expected error, named requests
// with an expected decision and peer authentication mode.
func Parse(data []byte, vars map[string]string) (*File, error) {
	var missing []string
	data = varRef.ReplaceAllFunc(data, func(m []byte) []byte {
		name := string(varRef.FindSubmatch(m)[1])
		v, ok := vars[name]
		if !ok {
			missing = append(missing, name)
			return m
		}
		return []byte(v)
	})
	if len(missing) > 0 {
		return nil, fmt.Errorf("unknown variables %s", strings.Join(missing, ", "))
	}
	var f File
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		return nil, err
	}
	if strings.TrimSpace(f.Cite) == "" {
		return nil, errors.New("cite is required")
	}
	if f.Error != "" {
		if len(f.Requests) > 0 {
			return nil, errors.New("a file that expects an error has no requests")
		}
		return &f, nil
	}
	if len(f.Requests) == 0 {
		return nil, errors.New("no requests")
	}
	seen := map[string]bool{}
	for i, r := range f.Requests {
		switch {
		case r.Name == "" || strings.ContainsAny(r.Name, " /"):
			return nil, fmt.Errorf("requests[%d]: name is required, without spaces or slashes", i)
		case seen[r.Name]:
			return nil, fmt.Errorf("requests[%d]: name %q used twice", i, r.Name)
		case len(bytes.TrimSpace(r.Request)) == 0:
			return nil, fmt.Errorf("requests[%d] %s: request is required", i, r.Name)
		case r.Expect.Decision != "ALLOW" && r.Expect.Decision != "DENY":
			return nil, fmt.Errorf("requests[%d] %s: expect.decision must be ALLOW or DENY", i, r.Name)
		case r.Expect.PeerAuthentication.Mode == "":
			return nil, fmt.Errorf("requests[%d] %s: expect.peerAuthentication.mode is required", i, r.Name)
		}
		seen[r.Name] = true
	}
	return &f, nil
}

// Mismatch describes how out differs from want, "" when it does not.
func (want Expect) Mismatch(out check.Output) string {
	var d []string
	cmp := func(field, got, want string) {
		if got != want {
			d = append(d, fmt.Sprintf("%s: got %q, want %q", field, got, want))
		}
	}
	cmp("decision", out.Decision, want.Decision)
	cmp("stage", out.Stage, want.Stage)
	cmp("policy", out.Policy, want.Policy)
	cmp("peerAuthentication.mode", out.PeerAuthentication.Mode, want.PeerAuthentication.Mode)
	if want.Rule != nil {
		got := "none"
		if out.Rule != nil {
			got = fmt.Sprint(*out.Rule)
		}
		cmp("rule", got, fmt.Sprint(*want.Rule))
	}
	if want.Status != nil {
		cmp("status", fmt.Sprint(out.Status), fmt.Sprint(*want.Status))
	}
	if want.Audit != nil {
		cmp("audit", out.Audit, *want.Audit)
	}
	if want.DryRun != nil {
		var got check.DryRun
		if out.DryRun != nil {
			got = *out.DryRun
		}
		cmp("dryRun.decision", got.Decision, want.DryRun.Decision)
		cmp("dryRun.policy", got.Policy, want.DryRun.Policy)
	}
	return strings.Join(d, "; ")
}
