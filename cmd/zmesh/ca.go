//go:build !zmesh_dataplane

package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/zmesh/zmesh/internal/ca"
)

// caCmd is `zmesh ca`: operations on the control plane's CA data dir.
func caCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "ca", Short: "Operate the mesh CA (root rotation)"}
	var dataDir, trustDomain, keyType, step string
	var wait time.Duration
	var force bool
	config := func() (ca.Config, error) {
		if dataDir == "" {
			return ca.Config{}, &exitError{code: 2, err: fmt.Errorf("ca: --data-dir is required")}
		}
		td, err := spiffeid.TrustDomainFromString(trustDomain)
		if err != nil {
			return ca.Config{}, &exitError{code: 2, err: fmt.Errorf("ca: --trust-domain: %w", err)}
		}
		return ca.Config{DataDir: dataDir, TrustDomain: td, KeyType: ca.KeyType(keyType)}, nil
	}
	rotate := &cobra.Command{
		Use:   "rotate --data-dir DIR --step prepare|activate|retire",
		Short: "Run one step of a root rotation without an outage",
		Long: `Rotate the mesh root in three steps, waiting at least one workload
certificate lifetime (--wait) between them so every proxy renews:
  prepare   make a new root; the bundle trusts old and new, the CA signs with the old
  activate  sign with the new root; the old one stays trusted
  retire    drop the old root from the bundle
A running control plane picks each step up from the data dir by itself.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config()
			if err != nil {
				return err
			}
			st, err := ca.Rotate(cfg, ca.RotationStep(step), ca.RotateOptions{Wait: wait, Force: force})
			if err != nil {
				return err
			}
			printRotation(cmd.OutOrStdout(), st)
			return nil
		},
	}
	f := rotate.Flags()
	f.StringVar(&step, "step", "", "prepare, activate or retire")
	f.DurationVar(&wait, "wait", 0, "least time since the previous step (default: the workload certificate lifetime the control plane recorded in the data dir, else 24h)")
	f.BoolVar(&force, "force", false, "skip the wait (never the order of steps)")
	f.StringVar(&keyType, "key-type", string(ca.KeyECDSAP256), "key of the new root: ECDSA-P256, RSA-2048 or RSA-3072")
	status := &cobra.Command{
		Use:   "status --data-dir DIR",
		Short: "Show where the data dir stands in a root rotation",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config()
			if err != nil {
				return err
			}
			st, err := ca.ReadRotationStatus(cfg)
			if err != nil {
				return err
			}
			printRotation(cmd.OutOrStdout(), st)
			return nil
		},
	}
	for _, c := range []*cobra.Command{rotate, status} {
		c.Flags().StringVar(&dataDir, "data-dir", "", "the control plane's data directory")
		c.Flags().StringVar(&trustDomain, "trust-domain", "cluster.local", "the mesh trust domain")
	}
	cmd.AddCommand(rotate, status)
	return cmd
}

func printRotation(w io.Writer, st ca.RotationStatus) {
	fmt.Fprintf(w, "phase: %s\n", st.Phase)
	if st.Signing != nil {
		fmt.Fprintf(w, "signing root:  %s (expires %s)\n", st.Signing.Subject, st.Signing.NotAfter.UTC().Format(time.RFC3339))
	}
	if st.Next != nil {
		fmt.Fprintf(w, "prepared root: %s, prepared %s\n", st.Next.Subject, st.PreparedAt.UTC().Format(time.RFC3339))
	}
	if st.Previous != nil {
		fmt.Fprintf(w, "retiring root: %s, activated %s\n", st.Previous.Subject, st.ActivatedAt.UTC().Format(time.RFC3339))
	}
}
