package reliability

import (
	"net"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
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
// a third of -outage (at least 5 s): black-hole routes to each other's
// address inside both network namespaces, then removed. Requests on that
// pair fail meanwhile by construction. Recovery: from the heal until the
// last failed request.
func partition(t *testing.T, m *mesh) (time.Duration, string) {
	fe, be := m.w("web/frontend"), m.w("api/backend")
	feIP, _, _ := net.SplitHostPort(fe.app)
	beIP, _, _ := net.SplitHostPort(be.app)
	routes := [][2]string{{fe.netns, beIP}, {be.netns, feIP}}
	for _, r := range routes {
		ipRoute(t, "add", r[0], r[1])
	}
	healed := false
	heal := func() {
		if !healed {
			healed = true
			for _, r := range routes {
				ipRoute(t, "del", r[0], r[1])
			}
		}
	}
	defer heal()
	time.Sleep(max(*flagOutage/3, 5*time.Second))
	healedAt = time.Now()
	heal()
	// A request that was black-holed fails at fortio's 5 s time-out: wait
	// that out, so that the load sees the end of the failures.
	time.Sleep(6 * time.Second)
	return 0, "heal to the last failed request (a black-holed one fails at fortio's 5 s time-out)"
}

// healedAt is when the last partition healed; TestFaults reads the
// partition's recovery from it and the load's last failure.
var healedAt time.Time

func ipRoute(t *testing.T, op, netns, ip string) {
	t.Helper()
	if out, err := exec.Command("ip", "netns", "exec", netns, "ip", "route", op, "blackhole", ip+"/32").CombinedOutput(); err != nil {
		t.Fatalf("ip route %s blackhole %s in %s: %v %s", op, ip, netns, err, out)
	}
}
