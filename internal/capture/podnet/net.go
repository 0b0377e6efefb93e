package podnet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// etcNetns is where `ip netns exec NAME` finds files to bind over /etc.
const etcNetns = "/etc/netns"

// Create removes what an earlier run with the same prefix left behind
// (refusing if that run is still alive), records n in the state file, and
// creates it: the bridge with the gateway address, and for every pod its
// named namespace (lo up, eth0 with its address, a default route via the
// gateway), its veth pair on the bridge, and its /etc/netns files. On
// failure it removes what it created. The caller must Destroy n when done.
func Create(ctx context.Context, cfg Config, n Network, log *slog.Logger) error {
	if err := Cleanup(cfg, log); err != nil {
		return err
	}
	st, err := processStartTime(os.Getpid())
	if err != nil {
		return fmt.Errorf("podnet: %w", err)
	}
	s := State{PID: os.Getpid(), StartTime: st, Bridge: n.Bridge}
	for _, p := range n.Pods {
		s.NetNS = append(s.NetNS, p.NetNS)
		s.Veths = append(s.Veths, p.Veth)
	}
	if err := writeState(cfg, s); err != nil {
		return err
	}
	if err := create(ctx, cfg, n); err != nil {
		if derr := Destroy(cfg, log); derr != nil {
			log.Warn("podnet: cleanup after a failed create", "err", derr)
		}
		return err
	}
	return nil
}

func create(ctx context.Context, cfg Config, n Network) error {
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: n.Bridge}}
	if err := netlink.LinkAdd(br); err != nil {
		return fmt.Errorf("podnet: bridge %s: %w", n.Bridge, err)
	}
	if err := netlink.AddrAdd(br, &netlink.Addr{IPNet: ipNet(n.Gateway)}); err != nil {
		return fmt.Errorf("podnet: bridge %s address: %w", n.Bridge, err)
	}
	if err := netlink.LinkSetUp(br); err != nil {
		return fmt.Errorf("podnet: bridge %s up: %w", n.Bridge, err)
	}
	for _, p := range n.Pods {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := createPod(cfg, n, br, p); err != nil {
			return fmt.Errorf("podnet: %s/%s: %w", p.Namespace, p.Name, err)
		}
	}
	return nil
}

func createPod(cfg Config, n Network, br *netlink.Bridge, p Pod) error {
	ns, err := newNamed(p.NetNS)
	if err != nil {
		return fmt.Errorf("network namespace %s: %w", p.NetNS, err)
	}
	defer ns.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: p.Veth, MasterIndex: br.Index},
		PeerName: PodEth, PeerNamespace: netlink.NsFd(int(ns))}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("veth %s: %w", p.Veth, err)
	}
	if err := netlink.LinkSetUp(veth); err != nil {
		return fmt.Errorf("veth %s up: %w", p.Veth, err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	for _, name := range []string{"lo", PodEth} {
		l, err := h.LinkByName(name)
		if err != nil {
			return err
		}
		if name == PodEth {
			addr := &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(p.IP, n.Gateway.Bits()))}
			if err := h.AddrAdd(l, addr); err != nil {
				return fmt.Errorf("address %s: %w", p.IP, err)
			}
		}
		if err := h.LinkSetUp(l); err != nil {
			return fmt.Errorf("%s up: %w", name, err)
		}
		if name == PodEth {
			if err := h.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: n.Gateway.Addr().AsSlice()}); err != nil {
				return fmt.Errorf("default route: %w", err)
			}
		}
	}
	dir := filepath.Join(etcNetns, p.NetNS)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte(ResolvConf(cfg, n, p)), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "hosts"), []byte(Hosts(p)), 0o644)
}

// Destroy removes everything the state file of cfg lists: it kills every
// process still inside the pods' namespaces, deletes the namespaces (and
// with them the pods' ends of the veth pairs), the host ends, the bridge,
// the /etc/netns folders and the state file. What is already gone is
// skipped; it goes on past errors and returns them all.
func Destroy(cfg Config, log *slog.Logger) error {
	b, err := os.ReadFile(statePath(cfg))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("podnet: %w", err)
	}
	s, err := ParseState(b)
	if err != nil {
		return err
	}
	var errs []error
	for _, name := range s.NetNS {
		if killed := killIn(name); killed > 0 {
			log.Info("podnet: killed processes left in a pod namespace", "netns", name, "count", killed)
		}
		if err := netns.DeleteNamed(name); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("podnet: delete netns %s: %w", name, err))
		}
		if err := os.RemoveAll(filepath.Join(etcNetns, name)); err != nil {
			errs = append(errs, err)
		}
	}
	for _, name := range append(append([]string(nil), s.Veths...), s.Bridge) {
		if err := deleteLink(name); err != nil {
			errs = append(errs, fmt.Errorf("podnet: delete link %s: %w", name, err))
		}
	}
	if len(errs) == 0 {
		if err := os.Remove(statePath(cfg)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Cleanup removes what a run with cfg's prefix left behind, if its state
// file names a process that is gone; it refuses while that process runs.
func Cleanup(cfg Config, log *slog.Logger) error {
	b, err := os.ReadFile(statePath(cfg))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("podnet: %w", err)
	}
	s, err := ParseState(b)
	if err != nil {
		return fmt.Errorf("%w (remove %s by hand after checking)", err, statePath(cfg))
	}
	if s.alive() && s.PID != os.Getpid() {
		return fmt.Errorf("podnet: another run (pid %d) owns the pod network %q; stop it or use another prefix", s.PID, cfg.Prefix)
	}
	log.Info("podnet: removing what an earlier run left behind", "pid", s.PID, "bridge", s.Bridge, "netns", s.NetNS)
	return Destroy(cfg, log)
}

// deleteLink deletes the named link if it exists. The host end of a veth
// pair goes away by itself, asynchronously, once its peer's namespace is
// deleted: a link found a moment ago that the kernel no longer knows when
// it is deleted is gone, not an error.
func deleteLink(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return nil
	}
	err = netlink.LinkDel(l)
	if err == nil || errors.Is(err, unix.ENODEV) {
		return nil
	}
	if _, lerr := netlink.LinkByName(name); lerr != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(lerr, &nf) {
			return nil
		}
	}
	return err
}

// newNamed creates the network namespace /run/netns/NAME. netns.NewNamed
// moves the calling thread into it; the thread is moved back, and one that
// cannot be is left locked so that Go ends it.
func newNamed(name string) (netns.NsHandle, error) {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return 0, err
	}
	defer orig.Close()
	ns, err := netns.NewNamed(name)
	if serr := netns.Set(orig); serr != nil {
		if err == nil {
			ns.Close()
		}
		return 0, fmt.Errorf("back to the original namespace: %w", serr)
	}
	runtime.UnlockOSThread()
	return ns, err
}

// killIn kills (SIGKILL) every process whose network namespace is the
// named one, waits until they are gone (bounded), and returns how many it
// found. A namespace outlives its name while a process is in it, and a
// process that lost its parent-death signal (the proxy, after dropping
// root) would otherwise outlive a killed `zmesh up`.
func killIn(name string) int {
	var want unix.Stat_t
	if err := unix.Stat(filepath.Join("/run/netns", name), &want); err != nil {
		return 0
	}
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		var st unix.Stat_t
		if unix.Stat("/proc/"+e.Name()+"/ns/net", &st) == nil && st.Ino == want.Ino && st.Dev == want.Dev {
			pids = append(pids, pid)
		}
	}
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	deadline := time.Now().Add(3 * time.Second)
	for _, pid := range pids {
		for time.Now().Before(deadline) {
			if _, err := os.Stat("/proc/" + strconv.Itoa(pid) + "/ns/net"); err != nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return len(pids)
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
