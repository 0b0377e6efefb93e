package capture

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// A pod and a peer joined by a veth pair: the pod holds 198.51.100.1 and
// 2001:db8::1, the peer 198.51.100.2 and 2001:db8::2.
const (
	podIP   = "198.51.100.1"
	peerIP  = "198.51.100.2"
	podIP6  = "2001:db8::1"
	peerIP6 = "2001:db8::2"
)

func newTestPair(t *testing.T) (pod, peer netns.NsHandle) {
	t.Helper()
	pod, peer = newTestNetns(t), newTestNetns(t)
	h, err := netlink.NewHandleAt(pod)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	// newTestNetns gave each a veth0/veth1 pair of its own; rather than
	// reuse them, join the two with a new pair.
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "pod0"}, PeerName: "peer0", PeerNamespace: netlink.NsFd(int(peer))}); err != nil {
		t.Fatalf("veth: %v", err)
	}
	setup := func(ns netns.NsHandle, link string, addrs ...string) {
		h, err := netlink.NewHandleAt(ns)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		l, err := h.LinkByName(link)
		if err != nil {
			t.Fatal(err)
		}
		// The veth0 pair of newTestNetns holds 198.51.100.1: take it down
		// and use a subnet of our own on the pair between the two.
		if v, err := h.LinkByName("veth0"); err == nil {
			_ = h.LinkDel(v)
		}
		for _, a := range addrs {
			addr, err := netlink.ParseAddr(a)
			if err != nil {
				t.Fatal(err)
			}
			addr.Flags = unix.IFA_F_NODAD
			if err := h.AddrAdd(l, addr); err != nil {
				t.Fatalf("add %s: %v", a, err)
			}
		}
		if err := h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	setup(pod, "pod0", podIP+"/24", podIP6+"/64")
	setup(peer, "peer0", peerIP+"/24", peerIP6+"/64")
	return pod, peer
}

// nsPath is a path that names ns for Config.NetNS.
func nsPath(ns netns.NsHandle) string {
	return fmt.Sprintf("/proc/%d/fd/%d", syscall.Getpid(), int(ns))
}

// arrival is a connection or datagram that reached one of the test's
// listeners.
type arrival struct {
	at   string         // the listener's name
	orig netip.AddrPort // TCP: OriginalDst
}

// sinks are named listeners in the test's namespaces, which report every
// arrival on one channel.
type sinks struct {
	t   *testing.T
	got chan arrival
}

func newSinks(t *testing.T) *sinks { return &sinks{t: t, got: make(chan arrival, 16)} }

func (s *sinks) tcp(ns netns.NsHandle, name, addr string) {
	l := listenIn(s.t, ns, addr)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			orig, _ := OriginalDst(c)
			c.Close()
			s.got <- arrival{at: name, orig: orig}
		}
	}()
}

func (s *sinks) udp(ns netns.NsHandle, name, addr string) {
	var pc net.PacketConn
	var err error
	inNetns(s.t, ns, func() { pc, err = net.ListenPacket("udp", addr) })
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 512)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
			s.got <- arrival{at: name}
		}
	}()
}

// expect waits for the next arrival and checks where it landed.
func (s *sinks) expect(what, at string, orig string) {
	s.t.Helper()
	select {
	case a := <-s.got:
		if a.at != at {
			s.t.Errorf("%s landed at %s, want %s", what, a.at, at)
			return
		}
		if orig != "" && a.orig.String() != orig {
			s.t.Errorf("%s: original destination %s, want %s", what, a.orig, orig)
		}
	case <-time.After(5 * time.Second):
		s.t.Errorf("%s landed nowhere within 5s", what)
	}
}

// caller is who opens a connection: the app (root, unmarked), the proxy
// (its UID or GID, or its mark), or the peer.
type caller struct {
	name     string
	uid, gid uint32 // 0: unchanged (root)
	mark     int
}

var (
	app       = caller{name: "app"}
	proxyUID  = caller{name: "proxy (uid 1337)", uid: 1337}
	proxyGID  = caller{name: "proxy (gid 1337)", gid: 1337}
	proxyMark = caller{name: "proxy (mark 0x539)", mark: 0x539}
)

// dial opens a connection (or sends one datagram) from ns as c. The
// credentials are changed for this OS thread only (setresuid(2) itself
// acts per thread; Go's syscall.Setuid would change every thread), so a
// socket created here is owned by c's UID and GID. The real and saved IDs
// stay root, so the thread can change back.
func dial(t *testing.T, ns netns.NsHandle, c caller, network, addr string) {
	t.Helper()
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		orig, gerr := netns.Get()
		if gerr != nil {
			err = gerr
			return
		}
		defer orig.Close()
		if err = netns.Set(ns); err != nil {
			return
		}
		keep := false
		defer func() {
			if keep && netns.Set(orig) == nil {
				runtime.UnlockOSThread()
			}
		}()
		if c.gid != 0 {
			if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, ^uintptr(0), uintptr(c.gid), ^uintptr(0)); e != 0 {
				err = e
				return
			}
		}
		if c.uid != 0 {
			if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, ^uintptr(0), uintptr(c.uid), ^uintptr(0)); e != 0 {
				err = e
				return
			}
		}
		d := net.Dialer{Timeout: 5 * time.Second}
		if c.mark != 0 {
			d.Control = func(_, _ string, rc syscall.RawConn) error {
				var serr error
				if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, c.mark) }); err != nil {
					return err
				}
				return serr
			}
		}
		conn, derr := d.Dial(network, addr)
		if derr == nil {
			if strings.HasPrefix(network, "udp") {
				_, derr = conn.Write([]byte("query"))
			}
			conn.Close()
		}
		err = derr
		// Back to root on this thread; only then may it leave the
		// namespace and be reused.
		_, _, e1 := unix.RawSyscall(unix.SYS_SETRESUID, ^uintptr(0), 0, ^uintptr(0))
		_, _, e2 := unix.RawSyscall(unix.SYS_SETRESGID, ^uintptr(0), 0, ^uintptr(0))
		keep = e1 == 0 && e2 == 0
	}()
	<-done
	if err != nil {
		t.Fatalf("%s: dial %s %s: %v", c.name, network, addr, err)
	}
}

// podWithSinks returns a pod and a peer with listeners where a captured
// (or not) connection can land: the proxy's outbound, inbound, DNS and
// admin ports and the app's 8080 in the pod; 80, 3306 and DNS in the peer.
func podWithSinks(t *testing.T) (pod, peer netns.NsHandle, s *sinks) {
	pod, peer = newTestPair(t)
	s = newSinks(t)
	s.tcp(pod, "outbound", "127.0.0.1:15001")
	s.tcp(pod, "outbound", "[::1]:15001")
	s.tcp(pod, "inbound", "[::]:15006")
	s.tcp(pod, "dns", "127.0.0.1:15053")
	s.udp(pod, "dns", "127.0.0.1:15053")
	s.tcp(pod, "admin", "[::]:15020")
	s.tcp(pod, "app", "[::]:8080")
	s.tcp(pod, "ssh", "[::]:22")
	s.tcp(peer, "peer", "[::]:80")
	s.tcp(peer, "peer", "[::]:3306")
	s.tcp(peer, "peer", "[::]:53")
	s.udp(peer, "peer", "[::]:53")
	return pod, peer, s
}

func TestApplyRedirects(t *testing.T) {
	pod, peer, s := podWithSinks(t)
	cfg := Config{NetNS: nsPath(pod), ProxyMark: 0x539, ExcludeOutboundPorts: []uint16{3306}, ExcludeInboundPorts: []uint16{22}}
	if err := Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	// Twice: Apply replaces its rules, it does not stack them.
	if err := Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		from     netns.NsHandle
		who      caller
		network  string
		addr     string
		at, orig string
	}{
		{"the app's TCP to another host goes to the outbound port", pod, app, "tcp", peerIP + ":80", "outbound", peerIP + ":80"},
		{"over IPv6 too", pod, app, "tcp", "[" + peerIP6 + "]:80", "outbound", "[" + peerIP6 + "]:80"},
		{"a loopback-looking address cannot bypass the proxy", pod, app, "tcp", "127.0.0.9:8080", "outbound", "127.0.0.9:8080"},
		{"the app calling itself at 127.0.0.1 is left alone", pod, app, "tcp", "127.0.0.1:8080", "app", ""},
		{"the app calling itself at ::1 is left alone", pod, app, "tcp", "[::1]:8080", "app", ""},
		{"the app calling its own pod address is left alone", pod, app, "tcp", podIP + ":8080", "app", ""},
		{"an excluded outbound port is left alone", pod, app, "tcp", peerIP + ":3306", "peer", ""},
		{"the app's DNS over UDP goes to the proxy's DNS", pod, app, "udp", peerIP + ":53", "dns", ""},
		{"the app's DNS over TCP goes to the proxy's DNS", pod, app, "tcp", peerIP + ":53", "dns", peerIP + ":53"},
		{"the proxy's own connections (by UID) are not captured", pod, proxyUID, "tcp", peerIP + ":80", "peer", ""},
		{"the proxy's own connections (by GID) are not captured", pod, proxyGID, "tcp", peerIP + ":80", "peer", ""},
		{"the proxy's own connections (by mark) are not captured", pod, proxyMark, "tcp", peerIP + ":80", "peer", ""},
		{"the proxy's own DNS is not captured", pod, proxyUID, "udp", peerIP + ":53", "peer", ""},
		{"the proxy reaches the app at 127.0.0.1", pod, proxyUID, "tcp", "127.0.0.1:8080", "app", ""},
		{"the proxy calling its own pod meets its inbound side", pod, proxyUID, "tcp", podIP + ":8080", "inbound", podIP + ":8080"},
		{"inbound TCP goes to the inbound port", peer, app, "tcp", podIP + ":8080", "inbound", podIP + ":8080"},
		{"inbound over IPv6 too", peer, app, "tcp", "[" + podIP6 + "]:8080", "inbound", "[" + podIP6 + "]:8080"},
		{"the proxy's admin port is not captured inbound", peer, app, "tcp", podIP + ":15020", "admin", ""},
		{"an excluded inbound port is left alone", peer, app, "tcp", podIP + ":22", "ssh", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s.t = t
			dial(t, tc.from, tc.who, tc.network, tc.addr)
			s.expect(tc.who.name+" to "+tc.addr, tc.at, tc.orig)
		})
	}
}

func TestApplyIncludeOutboundCIDRs(t *testing.T) {
	pod, _, s := podWithSinks(t)
	cidrs, _, err := ParseCIDRs("203.0.113.0/24")
	if err != nil {
		t.Fatal(err)
	}
	if err := Apply(context.Background(), Config{NetNS: nsPath(pod), IncludeOutboundCIDRs: cidrs}); err != nil {
		t.Fatal(err)
	}
	dial(t, pod, app, "tcp", peerIP+":80")
	s.expect("the app to a range not included", "peer", "")
}

func TestRemove(t *testing.T) {
	pod, _, s := podWithSinks(t)
	path := nsPath(pod)
	if err := Remove(context.Background(), path); err != nil {
		t.Fatalf("Remove with nothing installed: %v", err)
	}
	if err := Apply(context.Background(), Config{NetNS: path}); err != nil {
		t.Fatal(err)
	}
	if ok, err := Installed(path); err != nil || !ok {
		t.Fatalf("Installed after Apply = %v, %v", ok, err)
	}
	dial(t, pod, app, "tcp", peerIP+":80")
	s.expect("captured", "outbound", peerIP+":80")
	for range 2 {
		if err := Remove(context.Background(), path); err != nil {
			t.Fatal(err)
		}
	}
	if ok, err := Installed(path); err != nil || ok {
		t.Fatalf("Installed after Remove = %v, %v", ok, err)
	}
	dial(t, pod, app, "tcp", peerIP+":80")
	s.expect("after Remove", "peer", "")
}

func TestApplyLeavesOtherNamespacesAlone(t *testing.T) {
	pod, peer, s := podWithSinks(t)
	if err := Apply(context.Background(), Config{NetNS: nsPath(pod)}); err != nil {
		t.Fatal(err)
	}
	if ok, err := Installed(nsPath(peer)); err != nil || ok {
		t.Fatalf("peer namespace: Installed = %v, %v", ok, err)
	}
	dial(t, peer, app, "tcp", podIP+":15020")
	s.expect("peer to pod admin", "admin", "")
}
