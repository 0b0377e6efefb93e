package pemcert_test

import (
	"fmt"

	"github.com/zmesh/zmesh/internal/pemcert"
)

// A key file handed to the lenient parser is skipped, not quoted.
func ExampleParse() {
	key := []byte("-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n")
	_, err := pemcert.Parse(key)
	fmt.Println(err)
	// Output: no PEM certificate found
}

// What a CA sends may hold certificates and nothing else.
func ExampleParseStrict() {
	key := []byte("-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n")
	_, err := pemcert.ParseStrict(key, 10)
	fmt.Println(err)
	// Output: unexpected PEM block "PRIVATE KEY"
}
