package podnet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// testHost runs fn with the calling goroutine locked in a fresh network
// namespace that plays the host, so that the bridge and the veths' host
// ends never touch the machine's own. Namespace names and /etc/netns are
// global, so cfg gets a prefix unique to the test.
func testHost(t *testing.T, fn func(cfg Config)) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root; CI runs this test as root")
	}
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	cfg := Config{Prefix: "zt" + hex.EncodeToString(b), Subnet: DefaultSubnet, StateDir: t.TempDir()}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	host, err := netns.New()
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	defer func() {
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		orig.Close()
	}()
	lo, _ := netlink.LinkByName("lo")
	_ = netlink.LinkSetUp(lo)
	// Whatever happens, remove what the test created.
	defer func() { _ = Destroy(cfg, quiet) }()
	fn(cfg)
}

// listen listens on addr inside the named namespace.
func listenInNetns(t *testing.T, name, addr string) net.Listener {
	t.Helper()
	var l net.Listener
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		orig, _ := netns.Get()
		defer orig.Close()
		ns, e := netns.GetFromName(name)
		if e != nil {
			err = e
			runtime.UnlockOSThread()
			return
		}
		defer ns.Close()
		if err = netns.Set(ns); err != nil {
			runtime.UnlockOSThread()
			return
		}
		l, err = net.Listen("tcp", addr)
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
	}()
	<-done
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func dialInNetns(name, addr string) error {
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		orig, _ := netns.Get()
		defer orig.Close()
		ns, e := netns.GetFromName(name)
		if e != nil {
			err = e
			runtime.UnlockOSThread()
			return
		}
		defer ns.Close()
		if err = netns.Set(ns); err != nil {
			runtime.UnlockOSThread()
			return
		}
		var c net.Conn
		if c, err = net.DialTimeout("tcp", addr, 3*time.Second); err == nil {
			c.Close()
		}
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
	}()
	<-done
	return err
}

func exists(path string) bool { _, err := os.Stat(path); return err == nil }

func TestCreateAndDestroy(t *testing.T) {
	testHost(t, func(cfg Config) {
		n, err := Plan(cfg, []Workload{{"web", "frontend"}, {"api", "backend"}})
		if err != nil {
			t.Fatal(err)
		}
		if err := Create(context.Background(), cfg, n, quiet); err != nil {
			t.Fatal(err)
		}
		front, back := n.Pods[0], n.Pods[1]
		// Pod to pod across the bridge, and pod to the host's gateway.
		listenInNetns(t, back.NetNS, back.IP.String()+":8080")
		if err := dialInNetns(front.NetNS, back.IP.String()+":8080"); err != nil {
			t.Errorf("frontend to backend: %v", err)
		}
		hostL, err := net.Listen("tcp", n.Gateway.Addr().String()+":0")
		if err != nil {
			t.Fatal(err)
		}
		defer hostL.Close()
		if err := dialInNetns(front.NetNS, hostL.Addr().String()); err != nil {
			t.Errorf("frontend to the host: %v", err)
		}
		// `ip netns exec` shows the pod its own resolv.conf.
		if _, err := exec.LookPath("ip"); err == nil {
			out, err := exec.Command("ip", "netns", "exec", back.NetNS, "cat", "/etc/resolv.conf").CombinedOutput()
			if err != nil || !strings.Contains(string(out), "search api.svc.cluster.local") {
				t.Errorf("resolv.conf in %s: %v\n%s", back.NetNS, err, out)
			}
		}
		if err := Destroy(cfg, quiet); err != nil {
			t.Fatal(err)
		}
		for _, p := range n.Pods {
			if exists("/run/netns/"+p.NetNS) || exists(filepath.Join(etcNetns, p.NetNS)) {
				t.Errorf("%s left behind after Destroy", p.NetNS)
			}
			if _, err := netlink.LinkByName(p.Veth); err == nil {
				t.Errorf("veth %s left behind", p.Veth)
			}
		}
		if _, err := netlink.LinkByName(n.Bridge); err == nil {
			t.Errorf("bridge %s left behind", n.Bridge)
		}
		if exists(statePath(cfg)) {
			t.Error("state file left behind")
		}
	})
}

// TestCreateRemovesWhatAKilledRunLeft plays a run that was killed: its
// state file names a process that is gone, and a process still runs in
// one of its namespaces. The next Create kills that process and starts
// afresh; while the owner lives, Create refuses.
func TestCreateRemovesWhatAKilledRunLeft(t *testing.T) {
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs the ip command (iproute2)")
	}
	testHost(t, func(cfg Config) {
		n, err := Plan(cfg, []Workload{{"web", "frontend"}})
		if err != nil {
			t.Fatal(err)
		}
		if err := Create(context.Background(), cfg, n, quiet); err != nil {
			t.Fatal(err)
		}
		straggler := exec.Command("ip", "netns", "exec", n.Pods[0].NetNS, "sleep", "60")
		if err := straggler.Start(); err != nil {
			t.Fatal(err)
		}
		waited := make(chan error, 1)
		go func() { waited <- straggler.Wait() }()
		defer straggler.Process.Kill()
		// Start returns before ip has entered the namespace: wait until
		// the straggler is in it, or Create may look before it arrives.
		deadline := time.Now().Add(5 * time.Second)
		for {
			out, _ := exec.Command("ip", "netns", "identify", fmt.Sprint(straggler.Process.Pid)).Output()
			if strings.TrimSpace(string(out)) == n.Pods[0].NetNS {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the straggler did not enter %s", n.Pods[0].NetNS)
			}
			time.Sleep(10 * time.Millisecond)
		}

		// The owner still runs: refuse.
		owner := exec.Command("sleep", "60")
		if err := owner.Start(); err != nil {
			t.Fatal(err)
		}
		st, _ := processStartTime(owner.Process.Pid)
		setOwner(t, cfg, owner.Process.Pid, st)
		if err := Create(context.Background(), cfg, n, quiet); err == nil || !strings.Contains(err.Error(), fmt.Sprint(owner.Process.Pid)) {
			t.Fatalf("Create while the owner runs: %v, want a refusal naming it", err)
		}
		// The owner dies without cleaning up.
		_ = owner.Process.Kill()
		_ = owner.Wait()
		if err := Create(context.Background(), cfg, n, quiet); err != nil {
			t.Fatalf("Create after the owner died: %v", err)
		}
		select {
		case <-waited:
		case <-time.After(5 * time.Second):
			t.Fatal("the process left in the pod namespace still runs")
		}
		if !exists("/run/netns/" + n.Pods[0].NetNS) {
			t.Fatal("namespace not re-created")
		}
	})
}

// setOwner rewrites the state file as if pid had written it.
func setOwner(t *testing.T, cfg Config, pid int, start uint64) {
	t.Helper()
	b, err := os.ReadFile(statePath(cfg))
	if err != nil {
		t.Fatal(err)
	}
	s, err := ParseState(b)
	if err != nil {
		t.Fatal(err)
	}
	s.PID, s.StartTime = pid, start
	if err := writeState(cfg, s); err != nil {
		t.Fatal(err)
	}
}
