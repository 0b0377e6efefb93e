//go:build linux

package proxy

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"net"
	"os"
	"os/exec"
	"runtime"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// The tests' capture: a network namespace the test creates, in which an
// nftables rule redirects every TCP connection to the client proxy's
// outbound listener, as istio-init's rules do. The proxy's listeners are
// created inside the namespace; its own connections are made from the
// test's namespace, so the rule never sees them (what UID or mark
// exclusion does in a real pod). The kernel, not the test, says where a
// connection was going (SO_ORIGINAL_DST).

// testNetns is a network namespace and a thread inside it that runs
// functions there.
type testNetns struct {
	name string
	run  chan func()
}

// newTestNetns creates a namespace with loopback up and an interface
// eth0 (podIP/24, the default route), or skips the test where that is
// impossible. Everything is removed at cleanup.
func newTestNetns(t *testing.T, podIP string) *testNetns {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("transparent capture test: needs root to create a network namespace (CI runs as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("transparent capture test: the ip command (iproute2) is not installed")
	}
	b := make([]byte, 4)
	rand.Read(b)
	ns := &testNetns{name: "zmesh-test-" + hex.EncodeToString(b), run: make(chan func())}
	if out, err := exec.Command("ip", "netns", "add", ns.name).CombinedOutput(); err != nil {
		t.Skipf("transparent capture test: cannot create a network namespace: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns.name).Run() })
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", "eth0", "type", "veth", "peer", "name", "eth0peer"},
		{"addr", "add", podIP + "/24", "dev", "eth0"},
		{"link", "set", "eth0", "up"},
		{"link", "set", "eth0peer", "up"},
		{"route", "add", "default", "dev", "eth0"},
	} {
		if out, err := exec.Command("ip", append([]string{"-n", ns.name}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	f, err := os.Open("/var/run/netns/" + ns.name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	errc := make(chan error, 1)
	go func() {
		// This thread enters the namespace and is never unlocked: it
		// ends with the goroutine, and the namespace with it.
		runtime.LockOSThread()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		errc <- nil
		for fn := range ns.run {
			fn()
		}
	}()
	if err := <-errc; err != nil {
		t.Skipf("transparent capture test: cannot enter the namespace: %v", err)
	}
	t.Cleanup(func() { close(ns.run) })
	return ns
}

// do runs fn in the namespace: sockets it creates belong there.
func (ns *testNetns) do(fn func()) {
	done := make(chan struct{})
	ns.run <- func() { defer close(done); fn() }
	<-done
}

// dial connects from inside the namespace, as a captured app does.
func (ns *testNetns) dial(ctx context.Context, addr string) (net.Conn, error) {
	var c net.Conn
	var err error
	ns.do(func() { c, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr) })
	return c, err
}

// redirectOutbound installs the capture rule: TCP from the namespace to
// anywhere goes to port (the outbound listener on loopback).
func (ns *testNetns) redirectOutbound(t *testing.T, port uint16) {
	t.Helper()
	var err error
	ns.do(func() {
		var c *nftables.Conn
		if c, err = nftables.New(); err != nil {
			return
		}
		tbl := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "zmesh_test"})
		ch := c.AddChain(&nftables.Chain{Name: "output", Table: tbl, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest})
		p := binary.BigEndian.AppendUint16(nil, port)
		c.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
			&expr.Immediate{Register: 1, Data: p},
			&expr.Redir{RegisterProtoMin: 1},
		}})
		err = c.Flush()
	})
	if err != nil {
		t.Skipf("transparent capture test: cannot install an nftables redirect (no nf_tables in this kernel?): %v", err)
	}
}
