package dnsproxy

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/zmesh/zmesh/internal/registry"
)

var services = []registry.Service{
	{Hostname: "backend.api.svc.cluster.local", Namespace: "api", Addresses: []string{"240.240.0.10"}},
	{Hostname: "frontend.web.svc.cluster.local", Namespace: "web", Addresses: []string{"240.240.0.20"}},
	{Hostname: "db.example.com", Namespace: "web", Addresses: []string{"10.1.2.3", "fd00::3"}},
	{Hostname: "noaddr.web.svc.cluster.local", Namespace: "web"},
}

// upstream runs a real DNS server (UDP and TCP) on loopback that knows
// one name.
func upstream(t *testing.T) string {
	t.Helper()
	pc, ln, err := listenBoth("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		if r.Question[0].Name == "example.org." && r.Question[0].Qtype == dns.TypeA {
			rr, _ := dns.NewRR("example.org. 60 IN A 192.0.2.1")
			m.Answer = append(m.Answer, rr)
		} else {
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}} {
		go srv.ActivateAndServe()
		t.Cleanup(func() { srv.Shutdown() })
	}
	return pc.LocalAddr().String()
}

func startServer(t *testing.T, upstreams ...string) *Server {
	t.Helper()
	s, err := New(Config{Addr: "127.0.0.1:0", Upstreams: upstreams, Namespace: "web", Timeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	s.Update(services, "cluster.local")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return s
}

func TestAnswers(t *testing.T) {
	s := startServer(t, upstream(t))
	tests := []struct {
		name     string
		qname    string
		qtype    uint16
		rcode    int
		want     []string // answer values
		fromMesh bool
	}{
		{name: "FQDN", qname: "backend.api.svc.cluster.local.", qtype: dns.TypeA, want: []string{"240.240.0.10"}, fromMesh: true},
		{name: "FQDN in capitals", qname: "Backend.API.svc.cluster.local.", qtype: dns.TypeA, want: []string{"240.240.0.10"}, fromMesh: true},
		{name: "name.namespace", qname: "backend.api.", qtype: dns.TypeA, want: []string{"240.240.0.10"}, fromMesh: true},
		{name: "name.namespace.svc", qname: "backend.api.svc.", qtype: dns.TypeA, want: []string{"240.240.0.10"}, fromMesh: true},
		{name: "a short name in the workload's namespace", qname: "frontend.", qtype: dns.TypeA, want: []string{"240.240.0.20"}, fromMesh: true},
		{name: "search path: backend.api + web.svc.cluster.local", qname: "backend.api.web.svc.cluster.local.", qtype: dns.TypeA, want: []string{"240.240.0.10"}, fromMesh: true},
		{name: "search path: frontend + web.svc.cluster.local", qname: "frontend.web.svc.cluster.local.", qtype: dns.TypeA, want: []string{"240.240.0.20"}, fromMesh: true},
		{name: "search path: backend.api + svc.cluster.local", qname: "backend.api.svc.cluster.local.", qtype: dns.TypeA, want: []string{"240.240.0.10"}, fromMesh: true},
		{name: "a ServiceEntry host", qname: "db.example.com.", qtype: dns.TypeA, want: []string{"10.1.2.3"}, fromMesh: true},
		{name: "AAAA of a ServiceEntry host with an IPv6 address", qname: "db.example.com.", qtype: dns.TypeAAAA, want: []string{"fd00::3"}, fromMesh: true},
		{name: "AAAA of a mesh name: no records, not NXDOMAIN", qname: "backend.api.svc.cluster.local.", qtype: dns.TypeAAAA, want: nil, fromMesh: true},
		{name: "a short name of another namespace is not ours", qname: "backend.", qtype: dns.TypeA, rcode: dns.RcodeNameError},
		{name: "a service without an address is forwarded", qname: "noaddr.web.svc.cluster.local.", qtype: dns.TypeA, rcode: dns.RcodeNameError},
		{name: "another name is forwarded", qname: "example.org.", qtype: dns.TypeA, want: []string{"192.0.2.1"}},
		{name: "an unknown name gets the upstream's NXDOMAIN", qname: "nowhere.test.", qtype: dns.TypeA, rcode: dns.RcodeNameError},
		{name: "other types of mesh names are forwarded", qname: "backend.api.svc.cluster.local.", qtype: dns.TypeTXT, rcode: dns.RcodeNameError},
	}
	for _, network := range []string{"udp", "tcp"} {
		c := &dns.Client{Net: network, Timeout: 2 * time.Second}
		for _, tt := range tests {
			t.Run(network+"/"+tt.name, func(t *testing.T) {
				q := new(dns.Msg)
				q.SetQuestion(tt.qname, tt.qtype)
				r, _, err := c.Exchange(q, s.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				if r.Rcode != tt.rcode {
					t.Fatalf("rcode %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[tt.rcode])
				}
				var got []string
				for _, rr := range r.Answer {
					if rr.Header().Name != tt.qname {
						t.Errorf("answer for %q, asked %q", rr.Header().Name, tt.qname)
					}
					switch v := rr.(type) {
					case *dns.A:
						got = append(got, v.A.String())
					case *dns.AAAA:
						got = append(got, v.AAAA.String())
					}
				}
				if !reflect.DeepEqual(got, tt.want) {
					t.Fatalf("answers %v, want %v", got, tt.want)
				}
				if r.Authoritative != tt.fromMesh {
					t.Errorf("authoritative %v", r.Authoritative)
				}
			})
		}
	}
}

func TestUpdateReplacesTheNames(t *testing.T) {
	s := startServer(t)
	s.Update([]registry.Service{{Hostname: "new.web.svc.cluster.local", Addresses: []string{"240.240.1.1"}}}, "")
	c := &dns.Client{Timeout: 2 * time.Second}
	q := new(dns.Msg)
	q.SetQuestion("new.", dns.TypeA)
	r, _, err := c.Exchange(q, s.Addr().String())
	if err != nil || len(r.Answer) != 1 {
		t.Fatalf("%v %v", r, err)
	}
	// The old names are gone; with no upstream, SERVFAIL.
	q.SetQuestion("frontend.", dns.TypeA)
	r, _, err = c.Exchange(q, s.Addr().String())
	if err != nil || r.Rcode != dns.RcodeServerFailure {
		t.Fatalf("%v %v", r, err)
	}
}

func TestUnreachableUpstreamIsServfailWithinTheTimeout(t *testing.T) {
	// A UDP socket that never answers.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	s := startServer(t, pc.LocalAddr().String())
	c := &dns.Client{Timeout: 5 * time.Second}
	q := new(dns.Msg)
	q.SetQuestion("example.org.", dns.TypeA)
	start := time.Now()
	r, _, err := c.Exchange(q, s.Addr().String())
	if err != nil || r.Rcode != dns.RcodeServerFailure {
		t.Fatalf("%v %v", r, err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("answered after %v", d)
	}
}

func TestResolvConf(t *testing.T) {
	p := filepath.Join(t.TempDir(), "resolv.conf")
	os.WriteFile(p, []byte("search a.b\nnameserver 10.0.0.1\nnameserver fd00::53\n"), 0o600)
	got, err := ResolvConf(p)
	if err != nil || strings.Join(got, ",") != "10.0.0.1:53,[fd00::53]:53" {
		t.Fatalf("%v %v", got, err)
	}
}

// FuzzAnswer: any message the server may receive is answered or handed to
// forwarding without a panic, and an answer never names another name.
func FuzzAnswer(f *testing.F) {
	for _, name := range []string{"backend.api.", "frontend.web.svc.cluster.local.", "x.", "."} {
		q := new(dns.Msg)
		q.SetQuestion(name, dns.TypeA)
		b, _ := q.Pack()
		f.Add(b)
	}
	s := &Server{}
	s.table.Store(buildTable(services, "web", "cluster.local"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := new(dns.Msg)
		if err := r.Unpack(b); err != nil {
			return
		}
		m := s.answer(r)
		if m == nil {
			return
		}
		for _, rr := range m.Answer {
			if rr.Header().Name != r.Question[0].Name {
				t.Fatalf("answered %q for %q", rr.Header().Name, r.Question[0].Name)
			}
		}
		if _, err := m.Pack(); err != nil {
			t.Fatalf("reply does not pack: %v", err)
		}
	})
}
