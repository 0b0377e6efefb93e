package capture

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// redirectAllTCP installs, in ns, the smallest rule that makes a
// redirected connection: every locally opened TCP connection goes to port.
func redirectAllTCP(t *testing.T, ns netns.NsHandle, port uint16) {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		t.Fatal(err)
	}
	tbl := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: "origdst_test"})
	ch := c.AddChain(&nftables.Chain{Name: "out", Table: tbl, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest})
	c.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		// Not the listener's own port: a connection made to it directly
		// stays un-NATed, which the test uses too.
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.BigEndian.PutUint16(port)},
		&expr.Immediate{Register: 1, Data: binaryutil.BigEndian.PutUint16(port)},
		&expr.Redir{RegisterProtoMin: 1},
	}})
	if err := c.Flush(); err != nil {
		t.Fatalf("nftables: %v", err)
	}
}

func TestOriginalDst(t *testing.T) {
	ns := newTestNetns(t)
	redirectAllTCP(t, ns, 15001)
	cases := []struct {
		name, listen, dial string
	}{
		{"IPv4 to an address of another host", "127.0.0.1:15001", "198.51.100.7:80"},
		{"IPv4 to another loopback address", "127.0.0.1:15001", "127.0.0.9:8080"},
		{"IPv4 on a dual-stack listener", "[::]:15001", "198.51.100.7:443"},
		{"IPv6", "[::1]:15001", "[2001:db8::7]:9000"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := listenIn(t, ns, tc.listen)
			accepted := make(chan net.Conn, 1)
			go func() {
				c, err := l.Accept()
				if err != nil {
					close(accepted)
					return
				}
				accepted <- c
			}()
			var client net.Conn
			var err error
			inNetns(t, ns, func() { client, err = net.DialTimeout("tcp", tc.dial, 5*time.Second) })
			if err != nil {
				t.Fatalf("dial %s: %v", tc.dial, err)
			}
			defer client.Close()
			server := <-accepted
			if server == nil {
				t.Fatal("accept failed")
			}
			defer server.Close()
			l.Close()
			got, err := OriginalDst(server)
			if err != nil {
				t.Fatalf("OriginalDst: %v", err)
			}
			if want := netip.MustParseAddrPort(tc.dial); got != want {
				t.Fatalf("OriginalDst = %s, want %s", got, want)
			}
		})
	}
}

func TestOriginalDstOfDirectConnectionIsTheListener(t *testing.T) {
	ns := newTestNetns(t)
	redirectAllTCP(t, ns, 15001)
	l := listenIn(t, ns, "127.0.0.1:15001")
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		accepted <- c
	}()
	var client net.Conn
	var err error
	inNetns(t, ns, func() { client, err = net.Dial("tcp", "127.0.0.1:15001") })
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server := <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	defer server.Close()
	// Conntrack reports the destination as opened: the listener itself,
	// which is how a caller tells a direct connection from a captured one.
	got, err := OriginalDst(server)
	if err != nil {
		t.Fatal(err)
	}
	if want := netip.MustParseAddrPort("127.0.0.1:15001"); got != want {
		t.Fatalf("OriginalDst of a direct connection = %s, want the listener's %s", got, want)
	}
}

func TestOriginalDstRejectsNonTCP(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if _, err := OriginalDst(a); err == nil {
		t.Fatal("OriginalDst of a pipe: no error")
	}
}
