package controlplane

import (
	"testing"
)

// FuzzParseMeshConfig feeds arbitrary bytes to the MeshConfig parser and
// the checks that follow it: an operator's file must give an error or a
// config, never a panic, and whatever is accepted must survive the same
// validation a running control plane applies.
func FuzzParseMeshConfig(f *testing.F) {
	f.Add([]byte(sampleMeshConfig))
	f.Add([]byte("trustDomain: example.org\n"))
	f.Add([]byte("extensionProviders: [{name: a, envoyExtAuthzHttp: {service: x, port: 1, statusOnError: '500'}}]"))
	f.Add([]byte("pathNormalization: {normalization: DECODE_AND_MERGE_SLASHES}"))
	f.Add([]byte("{"))
	f.Fuzz(func(t *testing.T, data []byte) {
		mc, err := ParseMeshConfig(data)
		if err != nil {
			if mc != nil {
				t.Fatal("ParseMeshConfig returned a config with an error")
			}
			return
		}
		if mc == nil {
			t.Fatal("ParseMeshConfig returned neither a config nor an error")
		}
		cfg := &Config{ConfigDir: "x", DataDir: "y"}
		_, _, _ = meshSettings(cfg, mc)
	})
}
