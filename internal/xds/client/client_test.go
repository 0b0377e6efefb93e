package client

import (
	"crypto/tls"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"

	"github.com/zmesh/zmesh/internal/registry"
	"github.com/zmesh/zmesh/internal/xds"
)

func testView() *xds.View {
	v := &xds.View{
		Mesh: xds.Mesh{TrustDomain: "cluster.local", RootNamespace: "istio-system"},
		Services: []registry.Service{{Hostname: "a.web.svc.cluster.local", Namespace: "web", Endpoints: []registry.Endpoint{
			{Address: "127.0.0.1:1", Identity: "spiffe://cluster.local/ns/web/sa/a", HasProxy: true, Workload: "web/a", Labels: map[string]string{registry.LabelTLSMode: "istio"}},
		}}},
	}
	v.Version = xds.Version(v)
	return v
}

// responses returns the delta responses a server sends for v, one per type.
func responses(t *testing.T, v *xds.View) []*discovery.DeltaDiscoveryResponse {
	t.Helper()
	enc, err := xds.Encode(v)
	if err != nil {
		t.Fatal(err)
	}
	var out []*discovery.DeltaDiscoveryResponse
	for i, typ := range xds.TypeURLs() {
		r := &discovery.DeltaDiscoveryResponse{TypeUrl: typ, SystemVersionInfo: v.Version, Nonce: typ + string(rune('a'+i))}
		for _, res := range enc[typ] {
			r.Resources = append(r.Resources, &discovery.Resource{Name: res.Name, Version: res.Version, Resource: res.Body})
		}
		out = append(out, r)
	}
	return out
}

func newTestClient(t *testing.T, apply func(*xds.View) error) *Client {
	t.Helper()
	if _, err := New(Config{Address: "127.0.0.1:1", TLS: nil, Apply: apply, Proxy: xds.Proxy{ID: "web/a"}}); err == nil {
		t.Fatal("New accepted a config without TLS")
	}
	c, err := New(Config{Address: "127.0.0.1:1", TLS: &tls.Config{MinVersion: tls.VersionTLS13}, Apply: apply, Proxy: xds.Proxy{ID: "web/a"}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestViewIsAppliedOnlyWhenEveryTypeArrivedAtOneVersion(t *testing.T) {
	var applied []*xds.View
	c := newTestClient(t, func(v *xds.View) error { applied = append(applied, v); return nil })
	s := newState()
	resps := responses(t, testView())
	for _, r := range resps[:len(resps)-1] {
		if reqs := c.receive(s, r); len(reqs) != 0 || len(applied) != 0 {
			t.Fatalf("partial view: applied %d, sent %d requests", len(applied), len(reqs))
		}
	}
	reqs := c.receive(s, resps[len(resps)-1])
	if len(applied) != 1 || applied[0].Version != testView().Version {
		t.Fatalf("applied %d views", len(applied))
	}
	if len(reqs) != len(resps) {
		t.Fatalf("sent %d ACKs, want %d", len(reqs), len(resps))
	}
	for _, r := range reqs {
		if r.GetErrorDetail() != nil || r.GetResponseNonce() == "" {
			t.Errorf("not an ACK: %v", r)
		}
	}
	select {
	case <-c.Synced():
	default:
		t.Error("Synced not closed after the first apply")
	}
	// The same version again (a resync) is ACKed without applying.
	s = newState()
	for _, r := range resps {
		c.receive(s, r)
	}
	if len(applied) != 1 {
		t.Errorf("resync of the applied version applied it again")
	}
}

func TestRejectedViewIsNackedAndLastGoodKept(t *testing.T) {
	fail := false
	c := newTestClient(t, func(v *xds.View) error {
		if fail {
			return errors.New("cannot compile policy")
		}
		return nil
	})
	s := newState()
	for _, r := range responses(t, testView()) {
		c.receive(s, r)
	}
	good := c.View()
	fail = true
	next := testView()
	next.Mesh.TrustDomainAliases = []string{"old.local"}
	next.Version = xds.Version(next)
	var reqs []*discovery.DeltaDiscoveryRequest
	for _, r := range responses(t, next) {
		reqs = append(reqs, c.receive(s, r)...)
	}
	if len(reqs) != len(xds.TypeURLs()) {
		t.Fatalf("sent %d requests, want a NACK per type", len(reqs))
	}
	for _, r := range reqs {
		if r.GetErrorDetail().GetMessage() != "cannot compile policy" {
			t.Errorf("not a NACK with the error: %v", r)
		}
	}
	if c.View() != good {
		t.Error("rejected view replaced the last good one")
	}
}

// TestJitterSpreadsReconnects: waits are drawn below the delay (full
// jitter), so a fleet that lost its control plane at once comes back
// spread over the whole delay rather than its upper half.
func TestJitterSpreadsReconnects(t *testing.T) {
	if got := jitter(0, func(time.Duration) time.Duration { t.Fatal("drew for a zero delay"); return 0 }); got != 0 {
		t.Errorf("jitter(0) = %v", got)
	}
	const delay = 4 * time.Second
	var lo, hi time.Duration = delay, 0
	for range 2000 {
		w := jitter(delay, rand.N[time.Duration])
		if w < 0 || w >= delay {
			t.Fatalf("wait %v outside [0, %v)", w, delay)
		}
		lo, hi = min(lo, w), max(hi, w)
	}
	if lo > delay/10 || hi < delay*9/10 {
		t.Errorf("2000 waits span only [%v, %v] of [0, %v)", lo, hi, delay)
	}
}
