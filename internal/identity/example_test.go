package identity_test

import (
	"fmt"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/zmesh/zmesh/internal/identity"
)

func ExampleForServiceAccount() {
	td := spiffeid.RequireTrustDomainFromString("cluster.local")
	id, err := identity.ForServiceAccount(td, "foo", "httpbin")
	if err != nil {
		panic(err)
	}
	fmt.Println(id)
	fmt.Println(identity.Principal(id))
	// Output:
	// spiffe://cluster.local/ns/foo/sa/httpbin
	// cluster.local/ns/foo/sa/httpbin
}
