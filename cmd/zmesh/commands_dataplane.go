//go:build zmesh_dataplane

package main

import "github.com/spf13/cobra"

// subcommands are the data plane's commands only: built with
// -tags zmesh_dataplane (bin/zmesh-proxy), the binary links none of the
// control plane, Kubernetes or operator code, which would double its size
// and, as mapped pages count in RSS, every proxy's memory.
func subcommands() []*cobra.Command {
	return []*cobra.Command{proxyCmd(), captureInitCmd(), echoCmd(), versionCmd()}
}
