//go:build !zmesh_dataplane

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/zmesh/zmesh/internal/analyze"
	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/config/filesource"
	"github.com/zmesh/zmesh/internal/controlplane"
)

// analyzeFindings is istioctl analyze's exit code when a message at
// Warning or above was found (DESIGN §5).
const analyzeFindings = 79

// analyzeCmd is `zmesh analyze` (DESIGN §5): Istio's message codes for the
// resources of files and directories; exit 0 when nothing at Warning or
// above was found, 79 otherwise, 2 for bad flags or unreadable input.
func analyzeCmd() *cobra.Command {
	var paths []string
	var output, meshConfig, trustDomain, kubeconfig string
	var kubernetes bool
	var rootNamespace string
	bad := func(err error) error { return &exitError{code: 2, err: err} }
	cmd := &cobra.Command{
		Use:   "analyze [-f PATH]... [--kubernetes] [-o text|json]",
		Short: "Find problems in Istio resources before they bite, with istioctl analyze's message codes",
		Long: `Analyze Istio resources (files and directories given with -f, or the cluster
with --kubernetes) and print one line per problem found, as istioctl does:

  Error [IST0101] (AuthorizationPolicy foo/deny-all) Referenced namespace not found: "bar"

IST codes are Istio's messages; ZM codes are zmesh's own, for what Istio
accepts silently (see the README for the list). zmesh.dev Workload documents
in the files are the workloads selectors are checked against. A resource
annotated galley.istio.io/analyze-suppress: "CODE,..." (or "*") is not
reported for those codes.

Exit status: 0 when nothing at Warning or above was found, 79 otherwise,
2 when the input cannot be read.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return bad(fmt.Errorf("analyze: -o must be text or json, not %q", output))
			}
			var in analyze.Input
			if kubernetes {
				if len(paths) > 0 {
					return bad(errors.New("analyze: --kubernetes reads the cluster; -f is for files"))
				}
				var err error
				if in, err = clusterInput(cmd.Context(), kubeconfig, rootNamespace); err != nil {
					return bad(err)
				}
			}
			if !kubernetes {
				if len(paths) == 0 {
					return bad(errors.New("analyze: give the resources to analyze with -f FILE or -f DIR (repeatable), or --kubernetes"))
				}
				files, err := readAnalyzeInputs(cmd.InOrStdin(), paths)
				if err != nil {
					return bad(err)
				}
				in = analyze.FromFiles(files)
			}
			in.TrustDomain = trustDomain
			var err error
			if meshConfig != "" {
				if in.Mesh, err = controlplane.LoadMeshConfig(meshConfig); err != nil {
					return bad(fmt.Errorf("analyze: %w", err))
				}
			}
			msgs := analyze.Analyze(in)
			if err := writeMessages(cmd.OutOrStdout(), cmd.ErrOrStderr(), msgs, output); err != nil {
				return err
			}
			if lvl, ok := analyze.Highest(msgs); ok && lvl >= analyze.Warning {
				return &exitError{code: analyzeFindings}
			}
			return nil
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return bad(fmt.Errorf("analyze: %w", err)) })
	f := cmd.Flags()
	f.StringArrayVarP(&paths, "file", "f", nil, "a YAML file, or a directory of them (*.yaml, *.yml); - for stdin; repeatable")
	f.StringVarP(&output, "output", "o", "text", "text or json")
	f.StringVar(&meshConfig, "mesh-config", "", "Istio MeshConfig YAML in force (root namespace, trust domain aliases, path normalization, extension providers)")
	f.StringVar(&trustDomain, "trust-domain", "cluster.local", "mesh trust domain, when the mesh config sets none")
	f.BoolVar(&kubernetes, "kubernetes", false, "analyze the cluster's resources (with --kubeconfig)")
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file for --kubernetes (default: the cluster of the pod this runs in)")
	f.StringVar(&rootNamespace, "root-namespace", "istio-system", "with --kubernetes: where the mesh ConfigMap istio is read from")
	return cmd
}

// readAnalyzeInputs reads each -f path: a directory's config files (as the
// control plane reads its config directory), a file, or stdin for "-".
func readAnalyzeInputs(stdin io.Reader, paths []string) (map[string][]byte, error) {
	files := map[string][]byte{}
	for _, p := range paths {
		if p == "-" {
			data, err := io.ReadAll(io.LimitReader(stdin, config.MaxInputSize+1))
			if err != nil {
				return nil, fmt.Errorf("analyze: stdin: %w", err)
			}
			files["stdin"] = data
			continue
		}
		info, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("analyze: %w", err)
		}
		if info.IsDir() {
			dir, err := filesource.Read(p)
			if err != nil {
				return nil, fmt.Errorf("analyze: %w", err)
			}
			for name, data := range dir {
				files[name] = data
			}
			continue
		}
		fh, err := os.Open(p)
		if err != nil {
			return nil, fmt.Errorf("analyze: %w", err)
		}
		data, err := io.ReadAll(io.LimitReader(fh, config.MaxInputSize+1))
		fh.Close()
		if err != nil {
			return nil, fmt.Errorf("analyze: %s: %w", p, err)
		}
		files[p] = data // one too large is rejected as IST0106
	}
	return files, nil
}

func writeMessages(out, errOut io.Writer, msgs []analyze.Message, format string) error {
	if format == "json" {
		if msgs == nil {
			msgs = []analyze.Message{}
		}
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(msgs)
	}
	for _, m := range msgs {
		if _, err := fmt.Fprintln(out, m.String()); err != nil {
			return err
		}
	}
	if len(msgs) == 0 {
		fmt.Fprintln(errOut, "✔ No validation issues found.")
	}
	return nil
}
