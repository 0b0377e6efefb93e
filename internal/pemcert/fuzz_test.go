package pemcert_test

import (
	"testing"

	"github.com/zmesh/zmesh/internal/pemcert"
)

// fuzzMax is the bound FuzzParse gives ParseStrict: the agent's own.
const fuzzMax = 10

// FuzzParse checks that neither mode panics, that ParseStrict accepts only
// what Parse accepts and returns the same certificates, and that what Parse
// accepts survives Encode unchanged. Its seeds include those of the agent's
// former FuzzParseAll.
func FuzzParse(f *testing.F) {
	root, rootKey := newCert(f, "root", nil, nil)
	leaf, leafKey := newCert(f, "leaf", root, rootKey)
	f.Add(pemcert.Encode(root))
	f.Add(pemcert.Encode(leaf, root))
	f.Add(cat(keyPEM(f, leafKey), pemcert.Encode(leaf)))
	f.Add(cat(pemcert.Encode(leaf), []byte("trailing")))
	f.Add([]byte("garbage"))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"))
	f.Add(badCert)
	f.Fuzz(func(t *testing.T, data []byte) {
		lenient, lerr := pemcert.Parse(data)
		strict, serr := pemcert.ParseStrict(data, fuzzMax)
		if serr == nil {
			if len(strict) == 0 || len(strict) > fuzzMax {
				t.Fatalf("ParseStrict accepted %d certificates", len(strict))
			}
			if lerr != nil {
				t.Fatalf("ParseStrict accepted what Parse rejects: %v", lerr)
			}
			if !equal(strict, lenient) {
				t.Fatalf("ParseStrict returned %d certificates, Parse %d others", len(strict), len(lenient))
			}
		}
		if lerr != nil {
			return
		}
		if len(lenient) == 0 {
			t.Fatal("Parse accepted no certificates")
		}
		again, err := pemcert.Parse(pemcert.Encode(lenient...))
		if err != nil {
			t.Fatalf("Parse rejects what Encode wrote: %v", err)
		}
		if !equal(again, lenient) {
			t.Fatalf("round trip changed the certificates")
		}
		if _, err := pemcert.ParseStrict(pemcert.Encode(lenient...), len(lenient)); err != nil {
			t.Fatalf("ParseStrict rejects what Encode wrote: %v", err)
		}
	})
}
