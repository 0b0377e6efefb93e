package reliability

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// cpOutage makes the control plane unreachable for -outage: it is
// stopped (SIGSTOP), so its connections stay open and answer nothing, as
// behind a black hole, and zmesh up, which restarts dead processes, does
// not replace it. Proxies must keep serving on their certificates (the
// outage mesh's lifetime is 2.5 outages) and warn as expiry nears.
// Recovery: from SIGCONT until every proxy is SYNCED again.
func cpOutage(t *testing.T, m *mesh) (time.Duration, string) {
	cp := m.cpPID()
	before := strings.Count(m.Logs(), "certificate expires soon")
	signal(t, cp, syscall.SIGSTOP)
	stopped := true
	defer func() {
		if stopped {
			syscall.Kill(cp, syscall.SIGCONT)
		}
	}()
	time.Sleep(*flagOutage)
	if m.cpPID() != cp {
		t.Errorf("the stopped control plane was replaced during the outage")
	}
	t0 := time.Now()
	signal(t, cp, syscall.SIGCONT)
	stopped = false
	end := waitFor(t, "every proxy SYNCED after the outage", 2*time.Minute, func() bool { return m.synced(4) })
	warned := strings.Count(m.Logs(), "certificate expires soon") - before
	expired := strings.Count(m.Logs(), "certificate expired and renewal keeps failing")
	return end.Sub(t0), "SIGCONT to 4 SYNCED; outage " + flagOutage.String() + ", cert TTL " + (*flagOutage * 5 / 2).String() +
		", expiry warnings " + strconv.Itoa(warned) + ", expiries " + strconv.Itoa(expired)
}

// partition cuts the captured frontend pod off from the backend pod for
// a third of -outage (at least 5 s), as a network between them that
// loses every packet would: inside both network namespaces, nftables
// drops what leaves for the other pod's address (dropPeer); then the
// rules are removed. Each app still reaches its own proxy. (Black-hole
// routes, which this fault used first, cut the app off from its own proxy
// as well: the app's packets to the peer's address are routed before they
// are redirected, so connect(2) failed in the app's pod with EINVAL, and
// the failures counted were fortio's, racing its 5 s time-out against the
// heal, not the mesh's.) Requests on that pair that are in flight while
// it lasts fail (fortio's time-out) or complete late, by construction.
// Recovery: from the heal until a new request through the pair is
// answered 200; checkPartition judges the rest.
func partition(t *testing.T, m *mesh) (time.Duration, string) {
	fe, be := m.w("web/frontend"), m.w("api/backend")
	feIP, _, _ := net.SplitHostPort(fe.app)
	beIP, _, _ := net.SplitHostPort(be.app)
	// probe is a new request from the frontend's pod to the backend, as
	// its app makes them: true when answered 200 within a second.
	probe := func() bool {
		return exec.Command("ip", "netns", "exec", fe.netns, bins.fortio, "curl", "-timeout", "1s",
			"-H", "Host: "+pairs[0].host, "http://"+be.app+"/").Run() == nil
	}
	var undo []func()
	heal := func() {
		for _, u := range undo {
			u()
		}
		undo = nil
	}
	defer heal()
	start := time.Now()
	undo = append(undo, dropPeer(t, fe.netns, beIP))
	undo = append(undo, dropPeer(t, be.netns, feIP))
	if probe() {
		t.Errorf("a request from the frontend was answered during the partition: the cut is not in force")
	}
	time.Sleep(time.Until(start.Add(max(*flagOutage/3, 5*time.Second))))
	heal()
	healedAt = time.Now()
	end := waitFor(t, "a new request from the frontend answered after the heal", 30*time.Second, probe)
	// A request stalled by the partition fails at fortio's time-out:
	// wait that out, so that the load sees the end of the failures (and,
	// with during's 2 s after, runs past what checkPartition allows).
	time.Sleep(time.Until(healedAt.Add(fortioTimeout + time.Second)))
	return end.Sub(healedAt), "heal to a new request through the pair answered 200"
}

// healedAt is when the last partition healed; checkPartition reads it.
var healedAt time.Time

// checkPartition judges the load through a partition: the pair not cut
// off loses nothing, and the partitioned pair's failures are requests the
// partition stalled, which end at fortio's time-out after the heal at
// the latest; a failure after that is a request sent after the heal
// that the mesh failed (a stale pooled connection, an endpoint still held
// out). Pass through rec.
func checkPartition(t *testing.T, res loadResult, rec time.Duration) time.Duration {
	if n := res.Pairs[1].Failed; n > 0 {
		t.Errorf("%d requests failed on %s -> %s, which the partition does not cut", n, pairs[1].caller, pairs[1].host)
	}
	if f := res.Pairs[0].Fails; len(f) > 0 {
		last := f[len(f)-1].Sub(healedAt)
		t.Logf("partitioned pair: %d failed, first %s before the heal, last %s after it", len(f), healedAt.Sub(f[0]).Round(time.Millisecond), last.Round(time.Millisecond))
		// fortio's time-out, and 2 s for a loaded machine's scheduling.
		if last > fortioTimeout+2*time.Second {
			t.Errorf("a request failed %s after the heal: later than fortio's %s time-out allows for a request the partition stalled", last.Round(time.Millisecond), fortioTimeout)
		}
	}
	return rec
}

// partitionTable is the nftables table dropPeer adds in a pod's network
// namespace (family ip; the capture's own table is "zmesh", family inet).
const partitionTable = "zmesh_reliability_partition"

// dropPeer makes the network namespace netns drop every IPv4 packet it
// sends to peer, at the output filter hook (priority 0), and returns what
// undoes it. That hook comes after the capture's NAT redirect, so the
// app's packets to the peer's address, by then bound for its own proxy,
// pass; only the proxy's own traffic to the peer is lost. (Not at the
// input hook as well: the replies of the app's own proxy reach it with
// the peer's address restored as their source, before that hook.)
// Applied in both pods' namespaces, it cuts both ways.
func dropPeer(t *testing.T, netns, peer string) func() {
	t.Helper()
	ip := net.ParseIP(peer).To4()
	if ip == nil {
		t.Fatalf("partition: %q is not an IPv4 address", peer)
	}
	c, done := nftConn(t, netns)
	defer done()
	tbl := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: partitionTable})
	policy := nftables.ChainPolicyAccept
	ch := c.AddChain(&nftables.Chain{Name: "output", Table: tbl, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityFilter, Policy: &policy})
	c.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4}, // destination
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ip},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}})
	if err := c.Flush(); err != nil {
		t.Fatalf("partition: drop %s in %s: %v", peer, netns, err)
	}
	return func() {
		c, done := nftConn(t, netns)
		defer done()
		c.DelTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: partitionTable})
		if err := c.Flush(); err != nil {
			t.Errorf("partition: heal %s in %s: %v", peer, netns, err)
		}
	}
}

// nftConn returns an nftables connection to the named network namespace
// (as `ip netns` names it).
func nftConn(t *testing.T, name string) (*nftables.Conn, func()) {
	t.Helper()
	f, err := os.Open(filepath.Join("/run/netns", name))
	if err != nil {
		t.Fatalf("partition: %v", err)
	}
	c, err := nftables.New(nftables.WithNetNSFd(int(f.Fd())))
	if err != nil {
		f.Close()
		t.Fatalf("partition: nftables in %s: %v", name, err)
	}
	return c, func() { f.Close() }
}
