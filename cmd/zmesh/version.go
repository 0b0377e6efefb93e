package main

import (
	"fmt"
	"io"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is set at release builds with -ldflags "-X main.version=v1.2.3";
// otherwise the module version and the VCS stamp Go records say which
// build this is.
var version = ""

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print zmesh's version, commit and Go version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			info, _ := debug.ReadBuildInfo()
			return writeVersion(cmd.OutOrStdout(), version, info)
		},
	}
}

// writeVersion prints one line: `zmesh VERSION (commit REV[, modified], BUILT) GO`.
func writeVersion(w io.Writer, v string, info *debug.BuildInfo) error {
	goVersion, rev, when, modified := "", "", "", false
	if info != nil {
		goVersion = info.GoVersion
		if v == "" && info.Main.Version != "" {
			v = info.Main.Version
		}
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				when = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	if v == "" {
		v = "(devel)"
	}
	line := "zmesh " + v
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		detail := "commit " + rev
		if modified {
			detail += ", modified"
		}
		if when != "" {
			detail += ", " + when
		}
		line += " (" + detail + ")"
	}
	if goVersion != "" {
		line += " " + goVersion
	}
	_, err := fmt.Fprintln(w, line)
	return err
}
