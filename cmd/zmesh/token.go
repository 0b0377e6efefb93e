//go:build !zmesh_dataplane

package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/zmesh/zmesh/internal/ca"
)

func tokenCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Bootstrap tokens for proxies outside Kubernetes"}
	var dataDir, ns, sa string
	var ttl time.Duration
	create := &cobra.Command{
		Use:   "create",
		Short: "Print a bootstrap token that yields a certificate for one identity",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dataDir == "" || ns == "" || sa == "" {
				return &exitError{code: 2, err: fmt.Errorf("token create: --data-dir, --namespace and --service-account are required")}
			}
			tok, err := ca.IssueToken(dataDir, ns, sa, ttl)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), tok)
			return nil
		},
	}
	f := create.Flags()
	f.StringVar(&dataDir, "data-dir", "", "the control plane's data directory (holds the token signing key)")
	f.StringVar(&ns, "namespace", "", "namespace of the identity")
	f.StringVar(&sa, "service-account", "", "service account of the identity")
	f.DurationVar(&ttl, "ttl", 24*time.Hour, "how long the token may be used")
	cmd.AddCommand(create)
	return cmd
}
