// Package examples carries the example meshes inside the zmesh binary, so
// that `zmesh up` works from the binary alone, outside a checkout.
package examples

import (
	"embed"
	"io/fs"
)

//go:embed quickstart/*.yaml
var files embed.FS

// Quickstart returns the quickstart mesh (examples/quickstart): its YAML
// files at the root of the returned file system.
func Quickstart() fs.FS {
	sub, err := fs.Sub(files, "quickstart")
	if err != nil {
		panic(err) // the directory is embedded at build time
	}
	return sub
}
