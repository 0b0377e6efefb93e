package proxy

import (
	"net/http"
	"testing"
	"time"

	"github.com/zmesh/zmesh/internal/meshtest"
	"github.com/zmesh/zmesh/internal/registry"
	"github.com/zmesh/zmesh/internal/xds"
)

// TestPeerCertificateCheckedAtProxyTime runs a client and a server proxy
// whose clocks are offset from the machine's, with the mesh CA's
// one-hour certificates (valid from 6 minutes ago, the CA's backdate of a
// tenth of the lifetime, to an hour from now): each side judges the
// other's certificate by its own clock (Config.PeerClock), so a side whose
// clock is outside that window refuses the handshake (fails closed) and a
// side within it serves. This is what `zmesh proxy --clock-offset` relies
// on.
func TestPeerCertificateCheckedAtProxyTime(t *testing.T) {
	tests := []struct {
		name           string
		server, client time.Duration // clock offsets
		wantOK         bool
	}{
		{name: "in sync", wantOK: true},
		{name: "server 5 min behind, within the backdate", server: -5 * time.Minute, wantOK: true},
		{name: "client 50 min ahead, within the lifetime", client: 50 * time.Minute, wantOK: true},
		{name: "server 2 h ahead: the client's certificate expired by its clock", server: 2 * time.Hour},
		{name: "client 2 h ahead: the server's certificate expired by its clock", client: 2 * time.Hour},
		{name: "server 8 min behind: the client's certificate not yet valid by its clock", server: -8 * time.Minute},
		{name: "client 8 min behind: the server's certificate not yet valid by its clock", client: -8 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ca := meshtest.NewCA(t, testTD)
			at := func(off time.Duration) func(*Config) {
				return func(c *Config) {
					c.Logger = testLogger(t)
					c.PeerClock = func() time.Time { return time.Now().Add(off) }
				}
			}
			app := echoApp(t)
			server := startProxyFor(t, ca, registry.Workload{Name: "backend", Namespace: "api", ServiceAccount: "backend",
				Labels: map[string]string{"app": "backend"}, Services: []string{"backend"}}, app.Listener.Addr().String(), at(tt.server))
			client := startProxyFor(t, ca, registry.Workload{Name: "frontend", Namespace: "web", ServiceAccount: "frontend",
				Labels: map[string]string{"app": "frontend"}, Services: []string{"frontend"}}, "127.0.0.1:1", at(tt.client))
			mustApply(t, server, policyView(t, "s1", mesh(), strictMesh))
			mustApply(t, client, &xds.View{Version: "c1", Mesh: mesh(), Services: []registry.Service{serviceOf(server)}})

			resp, err := proxyClient(t, client).Get("http://backend.api.svc.cluster.local/")
			code := 0
			if err == nil {
				code = resp.StatusCode
				resp.Body.Close()
			}
			if ok := code == http.StatusOK; ok != tt.wantOK {
				t.Errorf("status %d (err %v), want OK %v", code, err, tt.wantOK)
			}
		})
	}
}
