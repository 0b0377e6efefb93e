package destrule

import (
	"os"
	"testing"

	"github.com/zmesh/zmesh/internal/config"
)

// FuzzSelect checks that no DestinationRule that parses, valid or not,
// makes selection, policy lookup or subsets panic: a proxy compiles
// whatever the control plane pushes through them.
func FuzzSelect(f *testing.F) {
	if b, err := os.ReadFile("../config/testdata/destinationrule.yaml"); err == nil {
		f.Add(b, "reviews.bookinfo.svc.cluster.local", uint32(9080))
	}
	f.Add([]byte(dr("a", "x", "{host: '*', subsets: [{name: v1}], trafficPolicy: {portLevelSettings: [{tls: {mode: DISABLE}}]}}")), "x.a.svc.cluster.local", uint32(0))
	f.Fuzz(func(t *testing.T, data []byte, host string, port uint32) {
		rs, _, err := config.Parse(data, "fuzz.yaml")
		if err != nil {
			return
		}
		for _, ns := range []string{"a", "bookinfo", "istio-system", "default"} {
			r := Select(rs, Client{Namespace: ns, Labels: map[string]string{"app": "sleep"}}, host, "bookinfo")
			for _, s := range append(r.Subsets(), "") {
				_ = r.Policy(s, port)
				_ = r.Ports(s)
				_, _ = r.Subset(s)
			}
			for _, res := range rs {
				_ = Visible(res, ns)
			}
		}
	})
}
