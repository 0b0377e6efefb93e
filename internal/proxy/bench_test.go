package proxy

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/zmesh/zmesh/internal/meshtest"
	"github.com/zmesh/zmesh/internal/registry"
	"github.com/zmesh/zmesh/internal/xds"
)

// benchGet runs GETs serially (ns/op is the latency of one request) and
// in parallel (ns/op is the inverse of throughput).
func benchGet(b *testing.B, c *http.Client, url, host string) {
	do := func() bool {
		req, _ := http.NewRequest("GET", url, nil)
		if host != "" {
			req.Host = host
		}
		resp, err := c.Do(req)
		if err != nil {
			b.Error(err)
			return false
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Errorf("status %d", resp.StatusCode)
			return false
		}
		return true
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if !do() {
				return
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if !do() {
					return
				}
			}
		})
	})
}

// BenchmarkOutboundInbound sends requests from a client through the client
// proxy's outbound listener, mTLS (HTTP/1.1, the app's protocol) to the
// server proxy, and on to an echo app, with a STRICT PeerAuthentication and
// an ALLOW policy in force. Compare with BenchmarkDirect, the same client
// calling the app, and BenchmarkOutboundInboundH2Upgrade.
func BenchmarkOutboundInbound(b *testing.B) {
	p := newPair(b, strictMesh+"---\n"+allowFrontend)
	c := benchClient(b)
	benchGet(b, c, "http://"+p.client.OutboundAddr().String()+"/bench", "backend.api.svc.cluster.local")
}

// BenchmarkOutboundInboundH2Upgrade is BenchmarkOutboundInbound under
// MeshConfig h2UpgradePolicy UPGRADE: one multiplexed HTTP/2 connection
// between the proxies.
func BenchmarkOutboundInboundH2Upgrade(b *testing.B) {
	p := newPair(b, strictMesh+"---\n"+allowFrontend)
	m := mesh()
	m.H2UpgradePolicy = "UPGRADE"
	mustApply(b, p.client, &xds.View{Version: "c2", Mesh: m, Services: []registry.Service{serviceOf(p.server)}})
	c := benchClient(b)
	benchGet(b, c, "http://"+p.client.OutboundAddr().String()+"/bench", "backend.api.svc.cluster.local")
}

// BenchmarkDirect is the baseline: the client calling the echo app
// directly.
func BenchmarkDirect(b *testing.B) {
	app := echoApp(b)
	benchGet(b, benchClient(b), app.URL+"/bench", "")
}

// BenchmarkInboundPlaintext isolates the server side: plaintext to a
// PERMISSIVE inbound listener, authorization, forwarding to the app.
func BenchmarkInboundPlaintext(b *testing.B) {
	ca := meshtest.NewCA(b, testTD)
	server := startProxy(b, ca, "api", "backend", echoApp(b))
	mustApply(b, server, &xds.View{Version: "1", Mesh: mesh(), PeerAuthentications: parse(b, permissiveMesh)})
	benchGet(b, benchClient(b), "http://"+server.InboundAddr().String()+"/bench", "")
}

// BenchmarkOutboundPlaintext isolates the client side: outbound routing to
// a plaintext endpoint.
func BenchmarkOutboundPlaintext(b *testing.B) {
	ca := meshtest.NewCA(b, testTD)
	client := startProxy(b, ca, "web", "frontend", echoApp(b))
	app := echoApp(b)
	mustApply(b, client, &xds.View{Version: "1", Mesh: mesh(), Services: []registry.Service{{
		Hostname: "legacy.web.svc.cluster.local", Namespace: "web",
		Endpoints: []registry.Endpoint{{Address: strings.TrimPrefix(app.URL, "http://")}},
	}}})
	benchGet(b, benchClient(b), "http://"+client.OutboundAddr().String()+"/bench", "legacy")
}

func benchClient(b *testing.B) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true}
	b.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}
