package server_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	securityv1beta1 "istio.io/api/security/v1beta1"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/meshtest"
	"github.com/zmesh/zmesh/internal/registry"
)

// TestChangeInOneNamespacePushesNothingElsewhere: editing a policy of
// namespace web reaches web's proxy and sends not one byte to api's.
func TestChangeInOneNamespacePushesNothingElsewhere(t *testing.T) {
	ca := meshtest.NewCA(t, trustDomain)
	snap := config.NewSnapshot("1", []config.Resource{strictMesh(),
		allowFrom("web", "allow", "frontend", "cluster.local/ns/web/sa/a"),
		allowFrom("api", "allow", "backend", "cluster.local/ns/web/sa/a")})
	cp := startControlPlane(t, ca, "", snap, time.Second)
	var webBytes, apiBytes atomic.Int64
	web := frontendSpec()
	web.services, web.address, web.bytesIn = nil, "", &webBytes
	api := backendSpec()
	api.services, api.address, api.bytesIn = nil, "", &apiBytes
	pw, pa := startProxy(t, ca, cp.addr, web), startProxy(t, ca, cp.addr, api)
	pw.waitSynced(t)
	pa.waitSynced(t)
	for _, id := range []string{"web/frontend", "api/backend"} {
		eventually(t, 2*time.Second, id+" synced", func() bool {
			st, ok := statusOf(cp.srv, id)
			return ok && st.Synced
		})
	}
	apiSent, _ := statusOf(cp.srv, "api/backend")
	webBefore, apiBefore := webBytes.Load(), apiBytes.Load()

	cp.srv.Update(config.NewSnapshot("2", []config.Resource{strictMesh(),
		allowFrom("web", "allow", "frontend", "cluster.local/ns/web/sa/b"),
		allowFrom("api", "allow", "backend", "cluster.local/ns/web/sa/a")}))
	eventually(t, 2*time.Second, "web's proxy applied the edit", func() bool {
		v := pw.last()
		return len(v.AuthorizationPolicies) == 1 && firstPrincipal(v.AuthorizationPolicies[0]) == "cluster.local/ns/web/sa/b"
	})
	eventually(t, 2*time.Second, "web's proxy ACKed", func() bool {
		st, _ := statusOf(cp.srv, "web/frontend")
		return st.Synced && st.AckedVersion == pw.last().Version
	})
	if webBytes.Load() == webBefore {
		t.Error("web's proxy read nothing, yet applied a new view")
	}
	if got := apiBytes.Load() - apiBefore; got != 0 {
		t.Errorf("api's proxy read %d bytes after an edit in web", got)
	}
	if st, _ := statusOf(cp.srv, "api/backend"); st.SentVersion != apiSent.SentVersion {
		t.Errorf("api's proxy was sent version %s after an edit in web (had %s)", st.SentVersion, apiSent.SentVersion)
	}
}

// TestPushesWaitForASlot: with room for one push at a time, every proxy of
// a mesh still gets its view, and a change every view sees still reaches
// all of them.
func TestPushesWaitForASlot(t *testing.T) {
	ca := meshtest.NewCA(t, trustDomain)
	cp := startControlPlaneWith(t, ca, config.NewSnapshot("1", []config.Resource{strictMesh()}), func(c *serverConfig) { c.MaxConcurrentPushes = 1 })
	var proxies []*testProxy
	for i := range 12 {
		proxies = append(proxies, startProxy(t, ca, cp.addr, proxySpec{ns: fmt.Sprintf("ns%d", i%3), name: fmt.Sprintf("w%d", i), sa: "sa", labels: map[string]string{"app": "a"}}))
	}
	for _, p := range proxies {
		p.waitSynced(t)
	}
	cp.srv.Update(config.NewSnapshot("2", []config.Resource{strictMesh(), allowFrom("istio-system", "everyone", "a", "cluster.local/ns/x/sa/y")}))
	for i, p := range proxies {
		eventually(t, 5*time.Second, fmt.Sprintf("proxy %d applied the mesh-wide policy", i), func() bool {
			return len(p.last().AuthorizationPolicies) == 1
		})
	}
}

func firstPrincipal(r config.Resource) string {
	ap, ok := r.Spec.(*securityv1beta1.AuthorizationPolicy)
	if !ok || len(ap.GetRules()) == 0 || len(ap.GetRules()[0].GetFrom()) == 0 {
		return ""
	}
	ps := ap.GetRules()[0].GetFrom()[0].GetSource().GetPrincipals()
	if len(ps) == 0 {
		return ""
	}
	return ps[0]
}

// TestRestoredRegistrationsWaitLongerThanDroppedStreams: after a restart,
// a restored registration outlives the short grace of a stream that drops,
// so the services of proxies still on their way back are not pushed as
// gone; it still leaves once RestoreGrace passes without its proxy.
func TestRestoredRegistrationsWaitLongerThanDroppedStreams(t *testing.T) {
	ca := meshtest.NewCA(t, trustDomain)
	restored := registry.Workload{Name: "backend", Namespace: "api", ServiceAccount: "backend", Identity: "spiffe://cluster.local/ns/api/sa/backend",
		Address: "127.0.0.1:16002", HasProxy: true, Services: []string{"backend"}}
	for _, tt := range []struct {
		name         string
		restoreGrace time.Duration
		wantKept     bool
	}{
		{"long restore grace", time.Hour, true},
		{"restore grace over", 10 * time.Millisecond, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cp := startControlPlaneWith(t, ca, config.NewSnapshot("1", []config.Resource{strictMesh()}), func(c *serverConfig) {
				c.Grace, c.RestoreGrace = 20*time.Millisecond, tt.restoreGrace
			})
			cp.srv.Restore([]registry.Workload{restored})
			p := startProxy(t, ca, cp.addr, frontendSpec())
			p.waitSynced(t)
			p.stop()
			eventually(t, 5*time.Second, "the dropped proxy's registration expired", func() bool {
				_, ok := cp.store.Workload("web/frontend")
				return !ok
			})
			if tt.wantKept {
				if _, ok := cp.store.Workload("api/backend"); !ok {
					t.Error("restored registration expired with the grace of a dropped stream")
				}
				return
			}
			eventually(t, 5*time.Second, "restored registration expired", func() bool {
				_, ok := cp.store.Workload("api/backend")
				return !ok
			})
		})
	}
}
