package capture

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func render(rs []Rule) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.String()
	}
	return out
}

func TestRulesDefault(t *testing.T) {
	var cfg Config
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	want := []string{
		`output: meta l4proto tcp oifname "lo" ip saddr 127.0.0.6 return`,
		`output: meta l4proto tcp oifname "lo" ip daddr != 127.0.0.0/8 tcp dport != 15008 meta skuid 1337 redirect to :15006`,
		`output: meta l4proto tcp oifname "lo" ip6 daddr != ::1 tcp dport != 15008 meta skuid 1337 redirect to :15006`,
		`output: meta l4proto tcp oifname "lo" ip daddr != 127.0.0.0/8 tcp dport != 15008 meta skgid 1337 redirect to :15006`,
		`output: meta l4proto tcp oifname "lo" ip6 daddr != ::1 tcp dport != 15008 meta skgid 1337 redirect to :15006`,
		`output: meta l4proto tcp meta skuid 1337 return`,
		`output: meta l4proto udp udp dport 53 meta skuid 1337 return`,
		`output: meta l4proto tcp meta skgid 1337 return`,
		`output: meta l4proto udp udp dport 53 meta skgid 1337 return`,
		`output: meta l4proto udp udp dport 53 redirect to :15053`,
		`output: meta l4proto tcp tcp dport 53 redirect to :15053`,
		`output: meta l4proto tcp oifname "lo" ip daddr != 127.0.0.0/8 return`,
		`output: meta l4proto tcp oifname "lo" ip6 daddr != ::1 return`,
		`output: meta l4proto tcp ip daddr 127.0.0.1 return`,
		`output: meta l4proto tcp ip6 daddr ::1 return`,
		`output: meta l4proto tcp redirect to :15001`,
		`prerouting: meta l4proto tcp tcp dport 15008 return`,
		`prerouting: meta l4proto tcp tcp dport 15020 return`,
		`prerouting: meta l4proto tcp tcp dport 15021 return`,
		`prerouting: meta l4proto tcp tcp dport 15090 return`,
		`prerouting: meta l4proto tcp redirect to :15006`,
	}
	if got := render(Rules(cfg)); !slices.Equal(got, want) {
		t.Fatalf("default rules:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestRulesKnobs checks each knob by the rules it adds or takes away,
// against the default rules.
func TestRulesKnobs(t *testing.T) {
	cases := []struct {
		name        string
		cfg         Config
		has, hasNot []string
	}{
		{
			name:   "loopback other than 127.0.0.1 is captured: no rule returns 127.0.0.0/8",
			hasNot: []string{`output: meta l4proto tcp ip daddr 127.0.0.0/8 return`},
			has:    []string{`output: meta l4proto tcp ip daddr 127.0.0.1 return`},
		},
		{
			name: "a socket mark exempts the proxy as its UID does",
			cfg:  Config{ProxyMark: 0x539},
			has: []string{
				`output: meta l4proto tcp meta mark & 0x539 == 0x539 return`,
				`output: meta l4proto udp udp dport 53 meta mark & 0x539 == 0x539 return`,
			},
		},
		{
			name: "other proxy UID and GID",
			cfg:  Config{ProxyUID: 2000, ProxyGID: 3000},
			has:  []string{`output: meta l4proto tcp meta skuid 2000 return`, `output: meta l4proto tcp meta skgid 3000 return`},
		},
		{
			name:   "no DNS capture",
			cfg:    Config{NoDNS: true},
			hasNot: []string{`output: meta l4proto udp udp dport 53 redirect to :15053`, `output: meta l4proto tcp tcp dport 53 redirect to :15053`},
		},
		{
			name: "excluded outbound ports and ranges return before the redirect",
			cfg: Config{ExcludeOutboundPorts: []uint16{3306}, ExcludeOutboundCIDRs: []netip.Prefix{
				netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}},
			has: []string{
				`output: meta l4proto tcp tcp dport 3306 return`,
				`output: meta l4proto tcp ip daddr 10.0.0.0/8 return`,
				`output: meta l4proto tcp ip6 daddr fd00::/8 return`,
			},
		},
		{
			name:   "included outbound ranges replace the catch-all redirect",
			cfg:    Config{IncludeOutboundCIDRs: []netip.Prefix{netip.MustParsePrefix("10.96.0.0/12")}},
			has:    []string{`output: meta l4proto tcp ip daddr 10.96.0.0/12 redirect to :15001`},
			hasNot: []string{`output: meta l4proto tcp redirect to :15001`},
		},
		{
			name: "included inbound ports replace the catch-all, proxy ports stay out",
			cfg:  Config{IncludeInboundPorts: []uint16{8080, 15020}},
			has: []string{
				`prerouting: meta l4proto tcp tcp dport 8080 redirect to :15006`,
				`prerouting: meta l4proto tcp tcp dport 15020 return`,
			},
			hasNot: []string{`prerouting: meta l4proto tcp redirect to :15006`, `prerouting: meta l4proto tcp tcp dport 15020 redirect to :15006`},
		},
		{
			name: "excluded inbound ports",
			cfg:  Config{ExcludeInboundPorts: []uint16{22}},
			has:  []string{`prerouting: meta l4proto tcp tcp dport 22 return`, `prerouting: meta l4proto tcp redirect to :15006`},
		},
		{
			name:   "no inbound capture: nothing at prerouting, the proxy's self-calls not sent to inbound",
			cfg:    Config{NoInbound: true},
			hasNot: []string{`prerouting: meta l4proto tcp redirect to :15006`, `output: meta l4proto tcp oifname "lo" ip daddr != 127.0.0.0/8 tcp dport != 15008 meta skuid 1337 redirect to :15006`},
		},
		{
			name:   "no outbound capture",
			cfg:    Config{NoOutbound: true},
			hasNot: []string{`output: meta l4proto tcp redirect to :15001`},
			has:    []string{`output: meta l4proto udp udp dport 53 redirect to :15053`, `prerouting: meta l4proto tcp redirect to :15006`},
		},
		{
			name: "other capture ports",
			cfg:  Config{OutboundPort: 16001, InboundPort: 16006, DNSPort: 16053},
			has: []string{
				`output: meta l4proto tcp redirect to :16001`,
				`prerouting: meta l4proto tcp redirect to :16006`,
				`output: meta l4proto udp udp dport 53 redirect to :16053`,
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			got := render(Rules(tc.cfg))
			for _, h := range tc.has {
				if !slices.Contains(got, h) {
					t.Errorf("missing rule %q in:\n%s", h, strings.Join(got, "\n"))
				}
			}
			for _, h := range tc.hasNot {
				if slices.Contains(got, h) {
					t.Errorf("unexpected rule %q", h)
				}
			}
			// Every return that exempts traffic must come before the
			// catch-all redirect of its hook, or it would never apply.
			last := map[Hook]int{}
			for i, r := range Rules(tc.cfg) {
				if r.Redirect != 0 && r.Dst == (netip.Prefix{}) && r.DstPort == 0 && !r.OutLoopback {
					last[r.Hook] = i
				}
			}
			for i, r := range Rules(tc.cfg) {
				if at, ok := last[r.Hook]; ok && i > at && r.Proto == TCP {
					t.Errorf("rule %q comes after the catch-all redirect", r)
				}
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{name: "zero value is Istio's defaults"},
		{name: "same inbound and outbound port", cfg: Config{InboundPort: 15001}, wantErr: "both 15001"},
		{name: "capture port among the proxy ports", cfg: Config{OutboundPort: 15020}, wantErr: "capture port and a proxy port"},
		{name: "port 0 in a list", cfg: Config{ExcludeOutboundPorts: []uint16{0}}, wantErr: "port 0"},
		{name: "invalid CIDR", cfg: Config{ExcludeOutboundCIDRs: []netip.Prefix{{}}}, wantErr: "invalid CIDR"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if tc.cfg.ProxyUID != 1337 || tc.cfg.OutboundPort != 15001 || tc.cfg.InboundPort != 15006 || tc.cfg.DNSPort != 15053 {
					t.Fatalf("defaults not filled: %+v", tc.cfg)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.wantErr)
			}
		})
	}
}

func TestParsePorts(t *testing.T) {
	cases := []struct {
		in      string
		want    []uint16
		all     bool
		wantErr bool
	}{
		{in: "*", all: true},
		{in: "", want: []uint16{}},
		{in: "80", want: []uint16{80}},
		{in: " 80 , 443,80", want: []uint16{80, 443}},
		{in: "0", wantErr: true},
		{in: "65536", wantErr: true},
		{in: "80,", wantErr: true},
		{in: "http", wantErr: true},
		{in: "-1", wantErr: true},
	}
	for _, tc := range cases {
		got, all, err := ParsePorts(tc.in)
		if (err != nil) != tc.wantErr || all != tc.all || !slices.Equal(got, tc.want) {
			t.Errorf("ParsePorts(%q) = %v, %v, %v; want %v, %v, error %v", tc.in, got, all, err, tc.want, tc.all, tc.wantErr)
		}
	}
}

func TestParseCIDRs(t *testing.T) {
	p := netip.MustParsePrefix
	cases := []struct {
		in      string
		want    []netip.Prefix
		all     bool
		wantErr bool
	}{
		{in: "*", all: true},
		{in: "", want: []netip.Prefix{}},
		{in: "10.0.0.0/8, fd00::/8", want: []netip.Prefix{p("10.0.0.0/8"), p("fd00::/8")}},
		{in: "192.0.2.7", want: []netip.Prefix{p("192.0.2.7/32")}},
		{in: "2001:db8::1", want: []netip.Prefix{p("2001:db8::1/128")}},
		{in: "10.0.0.1/8", wantErr: true},          // host bits: a typo
		{in: "::ffff:10.0.0.0/104", wantErr: true}, // v4-mapped: write IPv4
		{in: "fe80::1%eth0", wantErr: true},
		{in: "10.0.0.0/33", wantErr: true},
		{in: "bogus", wantErr: true},
	}
	for _, tc := range cases {
		got, all, err := ParseCIDRs(tc.in)
		if (err != nil) != tc.wantErr || all != tc.all || !slices.Equal(got, tc.want) {
			t.Errorf("ParseCIDRs(%q) = %v, %v, %v; want %v, %v, error %v", tc.in, got, all, err, tc.want, tc.all, tc.wantErr)
		}
	}
}

func FuzzParsePorts(f *testing.F) {
	for _, s := range []string{"*", "", "80,443", " 1 ,65535", "0", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ports, all, err := ParsePorts(s)
		if err != nil {
			return
		}
		cfg := Config{ExcludeOutboundPorts: ports, IncludeInboundPorts: ports}
		if all {
			cfg.IncludeInboundPorts = nil
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("ParsePorts(%q) = %v accepted, but Validate refuses it: %v", s, ports, err)
		}
		_ = Rules(cfg)
	})
}

func FuzzParseCIDRs(f *testing.F) {
	for _, s := range []string{"*", "", "10.0.0.0/8,fd00::/8", "192.0.2.1", "::ffff:1.2.3.4/128", "1.2.3.4/33"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cidrs, _, err := ParseCIDRs(s)
		if err != nil {
			return
		}
		cfg := Config{ExcludeOutboundCIDRs: cidrs, IncludeOutboundCIDRs: cidrs}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("ParseCIDRs(%q) = %v accepted, but Validate refuses it: %v", s, cidrs, err)
		}
		for _, r := range Rules(cfg) {
			for _, p := range []netip.Prefix{r.Dst, r.NotDst, r.Src} {
				if p.IsValid() && p.Masked() != p {
					t.Fatalf("rule %s has a prefix with host bits", r)
				}
			}
			_ = exprs(r)
		}
	})
}
