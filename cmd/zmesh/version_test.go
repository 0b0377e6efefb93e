package main

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestWriteVersion(t *testing.T) {
	info := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "8faba1f0123456789abcdef"}, {Key: "vcs.time", Value: "2026-08-20T10:00:00Z"}, {Key: "vcs.modified", Value: "true"},
	}}
	for _, c := range []struct {
		v    string
		info *debug.BuildInfo
		want string
	}{
		{"", info, "zmesh (devel) (commit 8faba1f01234, modified, 2026-08-20T10:00:00Z) go1.26.8\n"},
		{"v0.3.0", info, "zmesh v0.3.0 (commit 8faba1f01234, modified, 2026-08-20T10:00:00Z) go1.26.8\n"},
		{"", nil, "zmesh (devel)\n"},
	} {
		var b strings.Builder
		if err := writeVersion(&b, c.v, c.info); err != nil {
			t.Fatal(err)
		}
		if b.String() != c.want {
			t.Errorf("got %q, want %q", b.String(), c.want)
		}
	}
}
