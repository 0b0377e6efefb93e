package sidecar

import "testing"

func TestAdvertisedAdmin(t *testing.T) {
	for _, tc := range []struct{ name, advertised, admin, want string }{
		{"bound to loopback stays there", "127.0.0.1:40002", "127.0.0.1:40004", "127.0.0.1:40004"},
		{"bound to every IPv4 address: the advertised host", "10.88.0.2:15006", "0.0.0.0:15020", "10.88.0.2:15020"},
		{"bound to every IPv6 address: the advertised host", "[fd00::2]:15006", "[::]:15020", "[fd00::2]:15020"},
		{"unparsable admin: unknown", "10.88.0.2:15006", "nonsense", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := advertisedAdmin(tc.advertised, tc.admin); got != tc.want {
				t.Errorf("advertisedAdmin(%q, %q) = %q, want %q", tc.advertised, tc.admin, got, tc.want)
			}
		})
	}
}
