package podnet

import (
	"net/netip"
	"strings"
	"testing"
)

func TestPlan(t *testing.T) {
	cfg := Config{}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	n, err := Plan(cfg, []Workload{{"web", "frontend"}, {"web", "stranger"}, {"api", "backend"}})
	if err != nil {
		t.Fatal(err)
	}
	if n.Bridge != "zmesh0" || n.Gateway.String() != "10.47.0.1/24" {
		t.Fatalf("bridge %s gateway %s", n.Bridge, n.Gateway)
	}
	want := []string{"zmesh-web-frontend 10.47.0.2 zmeshv0", "zmesh-web-stranger 10.47.0.3 zmeshv1", "zmesh-api-backend 10.47.0.4 zmeshv2"}
	for i, p := range n.Pods {
		if got := p.NetNS + " " + p.IP.String() + " " + p.Veth; got != want[i] {
			t.Errorf("pod %d = %s, want %s", i, got, want[i])
		}
	}
}

func TestPlanErrors(t *testing.T) {
	cases := []struct {
		name    string
		cfg     Config
		ws      []Workload
		wantErr string
	}{
		{name: "no workload", wantErr: "no workload"},
		{name: "subnet too small", cfg: Config{Subnet: netip.MustParsePrefix("10.1.0.0/29")},
			ws: []Workload{{"a", "1"}, {"a", "2"}, {"a", "3"}, {"a", "4"}, {"a", "5"}, {"a", "6"}}, wantErr: "no room"},
		{name: "namespace names clash", ws: []Workload{{"a-b", "c"}, {"a", "b-c"}}, wantErr: "clash"},
		{name: "a slash would make a path", ws: []Workload{{"a/..", "b"}}, wantErr: "invalid name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			if _, err := Plan(tc.cfg, tc.ws); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.wantErr)
			}
		})
	}
}

func TestPlanUsesTheWholeSubnet(t *testing.T) {
	cfg := Config{Subnet: netip.MustParsePrefix("10.1.0.0/29")} // .1 host, .2-.6 pods, .7 broadcast
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ws := []Workload{{"a", "1"}, {"a", "2"}, {"a", "3"}, {"a", "4"}, {"a", "5"}}
	n, err := Plan(cfg, ws)
	if err != nil {
		t.Fatal(err)
	}
	if last := n.Pods[4].IP.String(); last != "10.1.0.6" {
		t.Fatalf("last pod %s, want 10.1.0.6", last)
	}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{name: "defaults"},
		{name: "prefix too long for link names", cfg: Config{Prefix: "abcdefghijk"}, wantErr: "prefix"},
		{name: "prefix with a dash", cfg: Config{Prefix: "zm-x"}, wantErr: "prefix"},
		{name: "IPv6 subnet", cfg: Config{Subnet: netip.MustParsePrefix("fd00::/64")}, wantErr: "IPv4"},
		{name: "host bits", cfg: Config{Subnet: netip.MustParsePrefix("10.1.0.1/24")}, wantErr: "host bits"},
		{name: "subnet too small", cfg: Config{Subnet: netip.MustParsePrefix("10.1.0.0/30")}, wantErr: "/29"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.wantErr)
			}
		})
	}
}

func TestResolvConfAndHosts(t *testing.T) {
	cfg := Config{}
	_ = cfg.Validate()
	n, _ := Plan(cfg, []Workload{{"api", "backend"}})
	got := ResolvConf(cfg, n, n.Pods[0])
	want := "nameserver 10.47.0.1\nsearch api.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
	if got != want {
		t.Fatalf("resolv.conf:\n%s\nwant:\n%s", got, want)
	}
	if h := Hosts(n.Pods[0]); !strings.Contains(h, "10.47.0.2\tbackend\n") || !strings.HasPrefix(h, "127.0.0.1\tlocalhost\n") {
		t.Fatalf("hosts:\n%s", h)
	}
}

func TestParseState(t *testing.T) {
	cases := []struct {
		name, in string
		wantErr  bool
	}{
		{name: "valid", in: `{"pid":1,"startTime":2,"bridge":"zmesh0","netns":["zmesh-a-b"],"veths":["zmeshv0"]}`},
		{name: "not JSON", in: `{`, wantErr: true},
		{name: "a path in a name", in: `{"bridge":"zmesh0","netns":["../../etc"]}`, wantErr: true},
		{name: "dot-dot", in: `{"bridge":"zmesh0","netns":[".."]}`, wantErr: true},
		{name: "empty bridge", in: `{"bridge":""}`, wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseState([]byte(tc.in)); (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
		})
	}
}

func FuzzParseState(f *testing.F) {
	f.Add([]byte(`{"pid":1,"startTime":2,"bridge":"zmesh0","netns":["zmesh-a-b"],"veths":["zmeshv0"]}`))
	f.Add([]byte(`{"bridge":"x","netns":["a/b"]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseState(b)
		if err != nil {
			return
		}
		for _, n := range append(append([]string{s.Bridge}, s.NetNS...), s.Veths...) {
			if strings.Contains(n, "/") || n == ".." || n == "" {
				t.Fatalf("accepted name %q", n)
			}
		}
	})
}
