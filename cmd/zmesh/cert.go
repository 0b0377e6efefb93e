//go:build !zmesh_dataplane

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/zmesh/zmesh/internal/certinfo"
)

// certCmd is `zmesh cert inspect`: a PEM file's or a proxy's live chain.
func certCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "cert", Short: "Inspect mesh certificates"}
	var admin, rootsFile string
	var asJSON bool
	inspect := &cobra.Command{
		Use:   "inspect [FILE.pem]",
		Short: "Show a certificate chain: SPIFFE ID, issuer, validity, key type, serial, and which bundle root it chains to",
		Long: `Show a certificate chain from a PEM file, or the live chain of a proxy
read from its admin port (--admin HOST:PORT, the /debug/certs page).
For a file, the bundle is --roots, else the self-signed roots the file holds.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (admin == "") == (len(args) == 0) {
				return &exitError{code: 2, err: errors.New("cert inspect: give a FILE or --admin HOST:PORT, not both")}
			}
			var chainPEM, bundlePEM []byte
			var err error
			if admin != "" {
				chainPEM, bundlePEM, err = fetchProxyCerts(cmd.Context(), admin)
			} else {
				chainPEM, err = os.ReadFile(args[0])
				if err == nil && rootsFile != "" {
					bundlePEM, err = os.ReadFile(rootsFile)
				}
			}
			if err != nil {
				return err
			}
			chain, err := certinfo.ParsePEM(chainPEM)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			roots := certinfo.SelfSigned(chain)
			if len(bundlePEM) > 0 {
				if roots, err = certinfo.ParsePEM(bundlePEM); err != nil {
					return &exitError{code: 2, err: fmt.Errorf("bundle: %w", err)}
				}
			}
			certs := certinfo.Describe(chain, roots)
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(certs)
			}
			return certinfo.Write(cmd.OutOrStdout(), certs, roots, time.Now())
		},
	}
	f := inspect.Flags()
	f.StringVar(&admin, "admin", "", "a proxy's admin address (HOST:PORT); reads its /debug/certs")
	f.StringVar(&rootsFile, "roots", "", "PEM trust bundle to find each certificate's root in (default: the file's own self-signed roots)")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(inspect)
	return cmd
}

// fetchProxyCerts reads the chain and bundle from a proxy's /debug/certs.
func fetchProxyCerts(ctx context.Context, admin string) (chain, bundle []byte, err error) {
	url := admin
	if !strings.Contains(url, "://") {
		url = "http://" + url
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(url, "/")+"/debug/certs", nil)
	if err != nil {
		return nil, nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("cert inspect: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("cert inspect: %s/debug/certs: %s", url, resp.Status)
	}
	var st struct {
		ChainPEM  string `json:"chainPEM"`
		BundlePEM string `json:"bundlePEM"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&st); err != nil {
		return nil, nil, fmt.Errorf("cert inspect: %s/debug/certs: %w", url, err)
	}
	if st.ChainPEM == "" {
		return nil, nil, fmt.Errorf("cert inspect: %s holds no certificate yet (or is a proxy without chainPEM in /debug/certs)", url)
	}
	return []byte(st.ChainPEM), []byte(st.BundlePEM), nil
}
