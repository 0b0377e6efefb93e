package server

import (
	"context"
	"slices"
	"testing"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"

	"github.com/zmesh/zmesh/internal/xds"
)

// capture is an ADS stream that records what it is sent.
type capture struct {
	discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesServer
	sent []*discovery.DeltaDiscoveryResponse
}

func (c *capture) Send(r *discovery.DeltaDiscoveryResponse) error {
	c.sent = append(c.sent, r)
	return nil
}

func (c *capture) Context() context.Context { return context.Background() }

// last returns the names and versions of the latest response's resources
// and its removed names.
func (c *capture) last() (typ string, sent, removed []string) {
	r := c.sent[len(c.sent)-1]
	for _, res := range r.GetResources() {
		sent = append(sent, res.GetName()+"@"+res.GetVersion())
	}
	return r.GetTypeUrl(), sent, slices.Sorted(slices.Values(r.GetRemovedResources()))
}

// TestHandleSubscriptions drives a stream's requests through handle: a
// type subscribed by name is sent those names only, more names add theirs,
// an ACK of every subscribed type marks the view applied, an unsubscribed
// name is not sent again, and another type subscribed as a wildcard is
// sent all of its resources.
func TestHandleSubscriptions(t *testing.T) {
	c := &capture{}
	st := &stream{s: New(Config{}), grpc: c, version: "v1"}
	ap, pa := xds.TypeAuthorizationPolicy, xds.TypePeerAuthentication
	st.encoded[typeIndex(ap)] = []xds.Resource{{Name: "a", Version: "1"}, {Name: "b", Version: "1"}}
	st.encoded[typeIndex(pa)] = []xds.Resource{{Name: "p", Version: "1"}}
	handle := func(r *discovery.DeltaDiscoveryRequest) {
		t.Helper()
		if err := st.handle(r); err != nil {
			t.Fatal(err)
		}
	}
	want := func(step, typ string, sent, removed []string) {
		t.Helper()
		gotType, gotSent, gotRemoved := c.last()
		if gotType != typ || !slices.Equal(gotSent, sent) || !slices.Equal(gotRemoved, removed) {
			t.Errorf("%s: sent %s %v removed %v, want %s %v and %v", step, gotType, gotSent, gotRemoved, typ, sent, removed)
		}
	}

	handle(&discovery.DeltaDiscoveryRequest{TypeUrl: ap, ResourceNamesSubscribe: []string{"a"}})
	want("subscribe a", ap, []string{"a@1"}, nil)
	handle(&discovery.DeltaDiscoveryRequest{TypeUrl: ap, ResponseNonce: c.sent[0].GetNonce(), ResourceNamesSubscribe: []string{"b"}})
	want("ACK and subscribe b", ap, []string{"b@1"}, nil)
	handle(&discovery.DeltaDiscoveryRequest{TypeUrl: ap, ResponseNonce: c.sent[1].GetNonce()})
	if st.status.AckedVersion != "v1" {
		t.Errorf("acked version %q after every subscribed type ACKed v1", st.status.AckedVersion)
	}
	n := len(c.sent)
	handle(&discovery.DeltaDiscoveryRequest{TypeUrl: ap, ResourceNamesUnsubscribe: []string{"a"}})
	if len(c.sent) != n {
		t.Errorf("an unsubscription was answered: %v", c.sent[n:])
	}
	st.version = "v2"
	st.encoded[typeIndex(ap)] = []xds.Resource{{Name: "a", Version: "2"}, {Name: "b", Version: "2"}}
	if err := st.send(ap, st.subs[typeIndex(ap)]); err != nil {
		t.Fatal(err)
	}
	want("a and b changed, a unsubscribed", ap, []string{"b@2"}, nil)
	handle(&discovery.DeltaDiscoveryRequest{TypeUrl: pa})
	want("wildcard", pa, []string{"p@1"}, nil)
}

func TestNumTypes(t *testing.T) {
	if n := len(xds.TypeURLs()); n != numTypes {
		t.Fatalf("numTypes = %d, xds has %d type URLs", numTypes, n)
	}
}

// TestSendSendsWhatChangedSinceWhatTheProxyHolds follows one subscription
// through views and subscription changes, and checks each response: the
// resources new or changed since the last response, and the ones gone.
// Whether the stream holds what was sent as the shared list or as a map
// of its own must not change any response.
func TestSendSendsWhatChangedSinceWhatTheProxyHolds(t *testing.T) {
	res := func(nv ...string) []xds.Resource {
		var out []xds.Resource
		for i := 0; i < len(nv); i += 2 {
			out = append(out, xds.Resource{Name: nv[i], Version: nv[i+1]})
		}
		return out
	}
	type step struct {
		name        string
		list        []xds.Resource // the view's resources of the type
		subscribe   []string       // names subscribed before sending ("*": wildcard)
		unsubscribe []string
		wantSent    []string // NAME@VERSION
		wantRemoved []string
	}
	tests := []struct {
		name     string
		wildcard bool
		steps    []step
	}{
		{name: "wildcard", wildcard: true, steps: []step{
			{name: "first view", list: res("a", "1", "b", "1"), wantSent: []string{"a@1", "b@1"}},
			{name: "unchanged", list: res("a", "1", "b", "1")},
			{name: "one changed, one gone, one new", list: res("a", "2", "c", "1"), wantSent: []string{"a@2", "c@1"}, wantRemoved: []string{"b"}},
			{name: "unsubscribing a held name makes it sent again", list: res("a", "2", "c", "1"), unsubscribe: []string{"a"}, wantSent: []string{"a@2"}},
			{name: "everything gone", list: nil, wantRemoved: []string{"a", "c"}},
			{name: "back", list: res("a", "3"), wantSent: []string{"a@3"}},
		}},
		{name: "by name", steps: []step{
			{name: "one of two subscribed", list: res("a", "1", "b", "1"), subscribe: []string{"a"}, wantSent: []string{"a@1"}},
			{name: "the other changes", list: res("a", "1", "b", "2")},
			{name: "the other subscribed too", list: res("a", "1", "b", "2"), subscribe: []string{"b"}, wantSent: []string{"b@2"}},
			{name: "one unsubscribed and changed", list: res("a", "2", "b", "2"), unsubscribe: []string{"a"}},
			{name: "the held one gone", list: res("a", "2"), wantRemoved: []string{"b"}},
			{name: "wildcard added", list: res("a", "2", "c", "1"), subscribe: []string{"*"}, wantSent: []string{"a@2", "c@1"}},
			{name: "then a change", list: res("a", "3", "c", "1"), wantSent: []string{"a@3"}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &capture{}
			st := &stream{s: New(Config{}), grpc: c}
			sub := &subscription{wildcard: tt.wildcard, names: map[string]bool{}}
			for _, s := range tt.steps {
				for _, n := range s.subscribe {
					if n == "*" {
						sub.wildcard = true
					} else {
						sub.names[n] = true
					}
				}
				for _, n := range s.unsubscribe {
					delete(sub.names, n)
					sub.forget(n)
				}
				st.version = s.name
				st.encoded[typeIndex(xds.TypeAuthorizationPolicy)] = s.list
				if err := st.send(xds.TypeAuthorizationPolicy, sub); err != nil {
					t.Fatal(err)
				}
				resp := c.sent[len(c.sent)-1]
				var sent []string
				for _, r := range resp.GetResources() {
					sent = append(sent, r.GetName()+"@"+r.GetVersion())
				}
				removed := slices.Sorted(slices.Values(resp.GetRemovedResources()))
				if !slices.Equal(sent, s.wantSent) || !slices.Equal(removed, s.wantRemoved) {
					t.Errorf("%s: sent %v removed %v, want %v and %v", s.name, sent, removed, s.wantSent, s.wantRemoved)
				}
				if resp.GetSystemVersionInfo() != s.name || sub.version != s.name {
					t.Errorf("%s: version %q, subscription's %q", s.name, resp.GetSystemVersionInfo(), sub.version)
				}
			}
		})
	}
}
