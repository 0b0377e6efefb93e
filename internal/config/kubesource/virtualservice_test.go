package kubesource_test

import (
	"strings"
	"testing"
	"time"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/config/kubesource"
)

// TestVirtualServiceFromCluster: a VirtualService written through
// v1beta1 reaches the snapshot, and an edit of its weights follows.
func TestVirtualServiceFromCluster(t *testing.T) {
	e := newEnv(t)
	const vs = `apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: reviews, namespace: vsns}
spec:
  hosts: [reviews]
  http:
  - route:
    - {destination: {host: reviews-v1}, weight: W1}
    - {destination: {host: reviews-v2}, weight: W2}
`
	e.applyYAML(t, replace(vs, "W1", "80", "W2", "20"))
	s := e.run(t, kubesource.Config{Debounce: kubesource.DefaultDebounce})
	ch, cancel := s.Subscribe()
	defer cancel()
	weight := func(w int32) func(*config.Snapshot) bool {
		return func(s *config.Snapshot) bool {
			r, ok := find(s, config.KindVirtualService, "vsns/reviews")
			return ok && r.Spec.(*networking.VirtualService).GetHttp()[0].GetRoute()[0].GetWeight() == w
		}
	}
	waitFor(t, ch, 10*time.Second, "the VirtualService", weight(80))
	e.applyYAML(t, replace(vs, "W1", "50", "W2", "50"))
	waitFor(t, ch, 5*time.Second, "the edited VirtualService", weight(50))
}

func replace(s string, kv ...string) string {
	for i := 0; i+1 < len(kv); i += 2 {
		s = strings.ReplaceAll(s, kv[i], kv[i+1])
	}
	return s
}
