package fdstore

import (
	"net"
	"slices"
	"strings"
	"testing"
)

func TestParseEnv(t *testing.T) {
	const pid = 4242
	for _, tc := range []struct {
		name      string
		env       map[string]string
		names     []string
		store     int
		wantError string
	}{
		{name: "nothing given", env: nil, store: -1},
		{name: "zmesh's supervisor: no LISTEN_PID", env: map[string]string{"LISTEN_FDS": "2", "LISTEN_FDNAMES": "inbound:outbound", "ZMESH_FDSTORE_FD": "5"},
			names: []string{"inbound", "outbound"}, store: 5},
		{name: "first start: no listeners, a store", env: map[string]string{"LISTEN_FDS": "0", "LISTEN_FDNAMES": "", "ZMESH_FDSTORE_FD": "3"}, names: []string{}, store: 3},
		{name: "systemd: our pid", env: map[string]string{"LISTEN_PID": "4242", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "inbound"}, names: []string{"inbound"}, store: -1},
		{name: "systemd without names", env: map[string]string{"LISTEN_PID": "4242", "LISTEN_FDS": "2"}, names: []string{"unknown", "unknown"}, store: -1},
		{name: "another process's listeners are not ours", env: map[string]string{"LISTEN_PID": "1", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "a:b"}, store: -1},
		{name: "count not a number", env: map[string]string{"LISTEN_FDS": "two"}, store: -1, wantError: "not a count"},
		{name: "negative count", env: map[string]string{"LISTEN_FDS": "-1"}, store: -1, wantError: "not a count"},
		{name: "too many", env: map[string]string{"LISTEN_FDS": "33"}, store: -1, wantError: "not a count"},
		{name: "names and count disagree", env: map[string]string{"LISTEN_FDS": "2", "LISTEN_FDNAMES": "a"}, store: -1, wantError: "names 1 listeners"},
		{name: "empty name", env: map[string]string{"LISTEN_FDS": "2", "LISTEN_FDNAMES": "a:"}, store: -1, wantError: "1 to 255"},
		{name: "name with a space", env: map[string]string{"LISTEN_FDS": "1", "LISTEN_FDNAMES": "a b"}, store: -1, wantError: "printable"},
		{name: "store among the listeners", env: map[string]string{"LISTEN_FDS": "2", "LISTEN_FDNAMES": "a:b", "ZMESH_FDSTORE_FD": "4"}, store: -1, wantError: "one of the 2 listeners"},
		{name: "store is stdin", env: map[string]string{"ZMESH_FDSTORE_FD": "0"}, store: -1, wantError: "not a descriptor"},
		{name: "store not a number", env: map[string]string{"ZMESH_FDSTORE_FD": "x"}, store: -1, wantError: "not a descriptor"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, err := parseEnv(func(k string) string { return tc.env[k] }, pid)
			if tc.wantError != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantError) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantError)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(env.names, tc.names) || env.store != tc.store {
				t.Errorf("got names %q store %d, want %q %d", env.names, env.store, tc.names, tc.store)
			}
		})
	}
}

// What a supervisor sets is what a child reads back.
func TestListenEnvRoundTrip(t *testing.T) {
	names := []string{"inbound", "outbound", "admin"}
	env := map[string]string{}
	for _, kv := range listenEnv(names) {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	got, err := parseEnv(func(k string) string { return env[k] }, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.names, names) || got.store != firstFD+len(names) {
		t.Errorf("got %q store %d", got.names, got.store)
	}
}

func TestSameAddr(t *testing.T) {
	tcp := func(s string) net.Addr {
		a, err := net.ResolveTCPAddr("tcp", s)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	for _, tc := range []struct {
		want string
		got  net.Addr
		same bool
	}{
		{"127.0.0.1:15006", tcp("127.0.0.1:15006"), true},
		{"127.0.0.1:15006", tcp("127.0.0.1:15007"), false},
		{"127.0.0.1:0", tcp("127.0.0.1:40000"), true},
		{"127.0.0.2:0", tcp("127.0.0.1:40000"), false},
		{"0.0.0.0:15006", tcp("[::]:15006"), true}, // Go binds 0.0.0.0 dual-stack
		{":15006", tcp("[::]:15006"), true},
		{":15006", tcp("0.0.0.0:15006"), true},
		{"0.0.0.0:15006", tcp("10.0.0.1:15006"), false},
		{"10.0.0.1:15006", tcp("[::ffff:10.0.0.1]:15006"), true},
		{"[::1]:15006", tcp("[::1]:15006"), true},
		{"localhost:15006", tcp("127.0.0.1:15006"), false}, // not a literal: bound anew
		{"127.0.0.1", tcp("127.0.0.1:15006"), false},
		{"127.0.0.1:x", tcp("127.0.0.1:15006"), false},
		{"127.0.0.1:15006", &net.UnixAddr{Name: "/tmp/s", Net: "unix"}, false},
	} {
		if got := sameAddr(tc.want, tc.got); got != tc.same {
			t.Errorf("sameAddr(%q, %v) = %v, want %v", tc.want, tc.got, got, tc.same)
		}
	}
}

func FuzzParseEnv(f *testing.F) {
	f.Add("2", "inbound:outbound", "", "5")
	f.Add("1", "a", "77", "")
	f.Add("x", ":::", "-1", "3")
	f.Fuzz(func(t *testing.T, fds, names, pid, store string) {
		env, err := parseEnv(func(k string) string {
			return map[string]string{EnvListenFDs: fds, EnvListenNames: names, EnvListenPID: pid, EnvStoreFD: store}[k]
		}, 77)
		if err != nil {
			return
		}
		if len(env.names) > MaxListeners {
			t.Fatalf("%d listeners", len(env.names))
		}
		for _, n := range env.names {
			if ValidName(n) != nil {
				t.Fatalf("invalid name %q accepted", n)
			}
		}
		if env.store >= 0 && env.store < firstFD+len(env.names) {
			t.Fatalf("store %d among %d listeners", env.store, len(env.names))
		}
	})
}
