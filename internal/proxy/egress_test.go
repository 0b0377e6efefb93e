package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zmesh/zmesh/internal/registry"
	"github.com/zmesh/zmesh/internal/xds"
)

// TestRegistryOnly checks MeshConfig outboundTrafficPolicy: ALLOW_ANY
// passes a host the mesh does not know through, REGISTRY_ONLY answers 502
// for it (plain requests and CONNECT alike) and never reaches it, while
// mesh services keep working. An unknown mode is a rejected push that
// leaves the last good configuration in force.
func TestRegistryOnly(t *testing.T) {
	p := newPair(t, "")
	var reached atomic.Int32
	outside := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		io.WriteString(w, "outside")
	}))
	t.Cleanup(outside.Close)
	outsideAddr := outside.Listener.Addr().String()

	view := func(version, mode string) *xds.View {
		m := mesh()
		m.OutboundTrafficPolicy = mode
		return &xds.View{Version: version, Mesh: m, Services: []registry.Service{serviceOf(p.server)}}
	}
	connect := func() int {
		c := dialRaw(t, p.client.OutboundAddr())
		fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", outsideAddr, outsideAddr)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: "CONNECT"})
		if err != nil {
			t.Fatalf("CONNECT: %v", err)
		}
		return resp.StatusCode
	}

	mustApply(t, p.client, view("allow-any", "ALLOW_ANY"))
	if code, _ := get(t, p.http, outside.URL+"/out"); code != 200 {
		t.Fatalf("ALLOW_ANY: passthrough answered %d", code)
	}
	if code := connect(); code != 200 {
		t.Fatalf("ALLOW_ANY: CONNECT answered %d", code)
	}
	before := reached.Load()

	mustApply(t, p.client, view("registry-only", "REGISTRY_ONLY"))
	if code, body := get(t, p.http, outside.URL+"/out"); code != http.StatusBadGateway || body != "" {
		t.Errorf("REGISTRY_ONLY: passthrough answered %d %q, want 502 with no body", code, body)
	}
	if code := connect(); code != http.StatusBadGateway {
		t.Errorf("REGISTRY_ONLY: CONNECT answered %d, want 502", code)
	}
	if n := reached.Load(); n != before {
		t.Errorf("the outside host was reached %d more times under REGISTRY_ONLY", n-before)
	}
	if code, _ := get(t, p.http, "http://backend.api.svc.cluster.local/in-mesh"); code != 200 {
		t.Errorf("REGISTRY_ONLY: mesh service answered %d", code)
	}
	if m := scrape(t, p.client); !strings.Contains(metricLine(m, "istio_requests_total{", `destination_service_name="BlackHoleCluster"`), `response_code="502"`) {
		t.Errorf("no BlackHoleCluster 502 in istio_requests_total")
	}

	if err := p.client.Apply(view("bogus", "ALLOW_SOME")); err == nil {
		t.Fatal("an unknown outboundTrafficPolicy was accepted")
	}
	if code, _ := get(t, p.http, outside.URL+"/out"); code != http.StatusBadGateway {
		t.Errorf("after a rejected push, passthrough answered %d: the last good REGISTRY_ONLY was lost", code)
	}
}
