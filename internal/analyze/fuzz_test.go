package analyze

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzAnalyze: whatever the files say, FromFiles and Analyze return
// (never panic, never hang) and every message renders.
func FuzzAnalyze(f *testing.F) {
	cases, _ := filepath.Glob("testdata/*.yaml")
	for _, c := range cases {
		if data, err := os.ReadFile(c); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata: {name: a}\n  spec: {ports: [{port: 1, targetPort: x}]}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		in := FromFiles(map[string][]byte{"f.yaml": data, "g.yaml": data})
		for _, m := range Analyze(in) {
			if m.String() == "" || m.Type.Code == "" {
				t.Fatalf("empty message %#v", m)
			}
		}
	})
}
