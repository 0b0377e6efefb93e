package destrule_test

import (
	"fmt"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/destrule"
	"github.com/zmesh/zmesh/internal/registry"
)

// A client in namespace web calling reviews in bookinfo: the rule of the
// host's namespace governs it; subset v2 originates TLS on port 9080, and
// its members are the endpoints labelled version=v2.
func Example() {
	rules, _, err := config.Parse([]byte(`
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: bookinfo}
spec:
  host: reviews
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
  subsets:
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      portLevelSettings:
      - port: {number: 9080}
        tls: {mode: SIMPLE}
`), "example.yaml")
	if err != nil {
		panic(err)
	}
	client := destrule.Client{Namespace: "web"}
	rule := destrule.Select(rules, client, "reviews.bookinfo.svc.cluster.local", "bookinfo")
	fmt.Println(rule.Keys)
	fmt.Println(rule.Policy("", 9080).TLS.GetMode(), rule.Policy("v2", 9080).TLS.GetMode(), rule.Policy("v2", 80).TLS.GetMode())

	labels, _ := rule.Subset("v2")
	eps := []registry.Endpoint{
		{Address: "10.0.0.1:9080", Labels: map[string]string{"version": "v1"}},
		{Address: "10.0.0.2:9080", Labels: map[string]string{"version": "v2"}},
	}
	for _, ep := range destrule.SubsetEndpoints(eps, labels) {
		fmt.Println(ep.Address)
	}
	// Output:
	// [bookinfo/reviews]
	// ISTIO_MUTUAL SIMPLE ISTIO_MUTUAL
	// 10.0.0.2:9080
}
