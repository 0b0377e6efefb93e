//go:build !zmesh_dataplane

package main

import "github.com/spf13/cobra"

// subcommands are every command of the zmesh binary.
func subcommands() []*cobra.Command {
	return []*cobra.Command{upCmd(), analyzeCmd(), versionCmd(), describeCmd(), controlplaneCmd(), proxyCmd(), captureInitCmd(),
		echoCmd(), tokenCmd(), proxyStatusCmd(), checkCmd(), certCmd(), caCmd(), installCmd(), uninstallCmd()}
}
