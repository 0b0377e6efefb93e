//go:build !zmesh_dataplane

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/zmesh/zmesh/internal/authn"
	"github.com/zmesh/zmesh/internal/authn/jwksfetch"
	"github.com/zmesh/zmesh/internal/authz"
	"github.com/zmesh/zmesh/internal/check"
	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/config/filesource"
	"github.com/zmesh/zmesh/internal/config/kubesource"
)

// checkLong documents the request file, so that --help is enough to
// write one (DESIGN §5 is the contract).
const checkLong = `Decide one inbound connection or request against the Istio resources in
--config DIR, exactly as the workload's proxy would: peer authentication,
then request authentication, then authorization. Prints one JSON object
({"decision","stage","policy","reason","peerAuthentication",...}) and exits
0 for any decision; bad resources or a bad request file exit 2.

The request file (--request FILE, JSON or YAML, - for stdin):

  workload: {namespace: foo, labels: {app: httpbin}, serviceAccount: httpbin}
  source:                        # the caller
    principal: cluster.local/ns/bar/sa/sleep   # omit for a plaintext peer
    namespace: bar               # optional; must agree with the principal
    ip: 10.1.2.3                 # optional: source.ip / ipBlocks
    remoteIp: 10.9.9.9           # optional: remote.ip / remoteIpBlocks
  tls: true                      # optional; true when source.principal is set
  request:                       # without method: a plain TCP connection
    port: 8000                   # required: the workload's port
    method: GET
    host: httpbin.foo.svc.cluster.local
    path: /headers
    headers: {x-token: admin}
    destinationIp: 10.0.0.7      # optional: destination.ip
    jwt: eyJ...                  # optional: a raw bearer token, checked with the
                                 # RequestAuthentications (inline jwks or jwksUri)
    auth:                        # or: attributes of an already validated JWT
      principal: issuer.example.com/subject
      claims: {iss: issuer.example.com, sub: subject, groups: [a, b]}
      audiences: [x]
      presenter: y
  connection: {sni: outbound_.8000_._.httpbin.foo.svc.cluster.local}

Example:

  cat > req.yaml <<EOF
  workload: {namespace: api, labels: {app: backend}}
  source: {principal: cluster.local/ns/web/sa/stranger}
  request: {port: 8080, method: GET, host: backend.api, path: /}
  EOF
  zmesh check --config examples/quickstart --request req.yaml`

// checkCmd is `zmesh check` (DESIGN §5): one JSON line and exit 0 for any
// decision; a message on stderr and exit 2 for bad resources, a bad
// request file or bad flags.
func checkCmd() *cobra.Command {
	var dir, kubeconfig, requestFile, normalization string
	var opts check.Options
	bad := func(err error) error { return &exitError{code: 2, err: err} }
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Decide one inbound connection/request offline, exactly as a proxy would, and explain it",
		Long:  checkLong,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return bad(fmt.Errorf("check: unexpected argument %q (resources go in --config DIR, the request in --request FILE)", args[0]))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (dir == "") == (kubeconfig == "") || requestFile == "" {
				return bad(fmt.Errorf("check: --request and one of --config or --kubeconfig are required"))
			}
			var err error
			if opts.PathNormalization, err = authz.ParsePathNormalization(normalization); err != nil {
				return bad(fmt.Errorf("check: --path-normalization: %w", err))
			}
			snap, warnings, err := loadCheckConfig(cmd, dir, kubeconfig)
			if err != nil {
				return bad(err)
			}
			for _, w := range warnings {
				fmt.Fprintln(cmd.ErrOrStderr(), "zmesh: warning:", w)
			}
			var data []byte
			if requestFile == "-" {
				data, err = io.ReadAll(io.LimitReader(cmd.InOrStdin(), 2<<20))
			} else {
				data, err = os.ReadFile(requestFile)
			}
			if err != nil {
				return bad(fmt.Errorf("check: request: %w", err))
			}
			in, err := check.ParseInput(data)
			if err != nil {
				return bad(err)
			}
			// A token is checked against the rule's keys as a proxy would:
			// inline jwks, or a jwksUri fetched now.
			opts.Keys = authn.NewJWKSCache(authn.JWKSCacheConfig{Fetcher: &jwksfetch.HTTP{}})
			out, err := check.Evaluate(cmd.Context(), snap, in, opts)
			if err != nil {
				return bad(err)
			}
			return json.NewEncoder(cmd.OutOrStdout()).Encode(out)
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return bad(fmt.Errorf("check: %w", err)) })
	f := cmd.Flags()
	f.StringVar(&dir, "config", "", "directory of Istio resources (*.yaml, *.yml)")
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file: read the Istio resources from that cluster instead of --config (objects zmesh rejects are reported on stderr and left out, as the control plane leaves them out)")
	f.StringVar(&requestFile, "request", "", "request description, JSON or YAML; - for stdin")
	f.StringVar(&opts.RootNamespace, "root-namespace", "istio-system", "namespace whose policies apply mesh-wide")
	f.StringVar(&opts.TrustDomain, "trust-domain", "cluster.local", "mesh trust domain")
	f.StringArrayVar(&opts.TrustDomainAliases, "trust-domain-alias", nil, "other trust domain the mesh accepts as its own (MeshConfig trustDomainAliases); repeat for several")
	f.StringVar(&normalization, "path-normalization", "BASE", "MeshConfig pathNormalization: BASE, MERGE_SLASHES, DECODE_AND_MERGE_SLASHES or NONE")
	return cmd
}

// loadCheckConfig reads the resources `zmesh check` evaluates: a directory
// (all or nothing, a bad file is an error), or a cluster, listed once
// through the control plane's conversion: there a rejected object is left
// out, as the control plane leaves it out, and named on stderr.
func loadCheckConfig(cmd *cobra.Command, dir, kubeconfig string) (*config.Snapshot, []config.Warning, error) {
	if dir != "" {
		return filesource.Load(dir)
	}
	rc, err := kubesource.RESTConfig(kubeconfig, false)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
	defer cancel()
	snap, rejected, warnings, err := kubesource.Load(ctx, rc)
	if err != nil {
		return nil, nil, err
	}
	for _, r := range rejected {
		fmt.Fprintf(cmd.ErrOrStderr(), "zmesh: rejected, not in force: %s %s/%s: %v\n", r.Kind, r.Namespace, r.Name, r.Err)
	}
	return snap, warnings, nil
}
