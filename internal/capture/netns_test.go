package capture

import (
	"net"
	"os"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// newTestNetns returns a fresh, unnamed network namespace with lo up and a
// link carrying 198.51.100.1/24 and 2001:db8::1/64 (documentation
// ranges, reachable only inside it), so that connections to other
// addresses of those ranges have a route and can be redirected. It is
// closed (and so freed) when the test ends. Without root the test skips.
func newTestNetns(t *testing.T) netns.NsHandle {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root; CI runs this test as root")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.New()
	if err != nil {
		t.Fatalf("new netns: %v", err)
	}
	if err := netns.Set(orig); err != nil {
		// This thread is stuck in the new namespace: never reuse it.
		runtime.LockOSThread()
		t.Fatalf("back to the test's netns: %v", err)
	}
	t.Cleanup(func() { ns.Close() })

	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		t.Fatalf("lo up: %v", err)
	}
	// A veth pair with both ends here: a link with a subnet and no
	// other host on it (kernels built without the dummy driver exist).
	dummy := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "veth0"}, PeerName: "veth1"}
	if err := h.LinkAdd(dummy); err != nil {
		t.Fatalf("add veth pair: %v", err)
	}
	for _, a := range []string{"198.51.100.1/24", "2001:db8::1/64"} {
		addr, err := netlink.ParseAddr(a)
		if err != nil {
			t.Fatal(err)
		}
		addr.Flags = unix.IFA_F_NODAD
		if err := h.AddrAdd(dummy, addr); err != nil {
			t.Fatalf("add %s: %v", a, err)
		}
	}
	if err := h.LinkSetUp(dummy); err != nil {
		t.Fatal(err)
	}
	return ns
}

// inNetns runs fn on an OS thread switched into ns, so that the sockets fn
// creates belong to ns; they keep belonging to it when used from other
// goroutines later.
func inNetns(t *testing.T, ns netns.NsHandle, fn func()) {
	t.Helper()
	done := make(chan struct{})
	var setErr error
	go func() {
		defer close(done)
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			setErr = err
			runtime.UnlockOSThread()
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			setErr = err
			runtime.UnlockOSThread()
			return
		}
		defer func() {
			// A thread that cannot return stays locked and dies with
			// this goroutine.
			if netns.Set(orig) == nil {
				runtime.UnlockOSThread()
			}
		}()
		fn()
	}()
	<-done
	if setErr != nil {
		t.Fatalf("enter netns: %v", setErr)
	}
}

// listenIn listens on addr inside ns.
func listenIn(t *testing.T, ns netns.NsHandle, addr string) net.Listener {
	t.Helper()
	var l net.Listener
	var err error
	inNetns(t, ns, func() { l, err = net.Listen("tcp", addr) })
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}
