package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/zmesh/zmesh/internal/check"
	"github.com/zmesh/zmesh/internal/config/filesource"
)

func checkCmd() *cobra.Command {
	var dir, requestFile string
	var opts check.Options
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Decide one inbound connection/request offline, exactly as a proxy would, and explain it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			bad := func(err error) error { return &exitError{code: 2, err: err} }
			if dir == "" || requestFile == "" {
				return bad(fmt.Errorf("check: --config and --request are required"))
			}
			snap, warnings, err := filesource.Load(dir)
			if err != nil {
				return bad(err)
			}
			for _, w := range warnings {
				fmt.Fprintln(os.Stderr, "zmesh: warning:", w)
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
			out, err := check.Evaluate(cmd.Context(), snap, in, opts)
			if err != nil {
				return bad(err)
			}
			return json.NewEncoder(cmd.OutOrStdout()).Encode(out)
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "config", "", "directory of Istio resources (*.yaml, *.yml)")
	f.StringVar(&requestFile, "request", "", "request description, JSON or YAML; - for stdin")
	f.StringVar(&opts.RootNamespace, "root-namespace", "istio-system", "namespace whose policies apply mesh-wide")
	f.StringVar(&opts.TrustDomain, "trust-domain", "cluster.local", "mesh trust domain")
	return cmd
}
