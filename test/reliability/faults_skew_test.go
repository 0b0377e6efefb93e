package reliability

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

var (
	flagSkew        = flag.Duration("skew", 5*time.Minute, "clock skew of the skew mesh: its proxies run alternately this far ahead of and behind the CA")
	flagSkewCertTTL = flag.Duration("skew-cert-ttl", time.Hour, "workload certificate lifetime of the skew mesh")
)

// skewCovered reports whether the CA's backdate (a tenth of the lifetime,
// at most 10 minutes: internal/ca/sign.go) covers the skew, in which
// case the skew mesh must lose no request; beyond it handshakes fail
// closed by design and the fault is only measured.
func skewCovered() bool { return min(*flagSkewCertTTL/10, 10*time.Minute) > *flagSkew }

// skewMeshArgs are zmesh up's arguments for the skew mesh: the CA on the
// machine's clock, the proxies (in workload order: frontend, backend,
// client, server) alternately -skew ahead and behind it, so each pair's
// client and server also disagree by twice the skew.
func skewMeshArgs() []string {
	return []string{"--cert-ttl", flagSkewCertTTL.String(),
		"--proxy-clock-offset", fmt.Sprintf("%s,%s", *flagSkew, -*flagSkew)}
}

// skewSigns are the log messages of an agent that sees a CA's clock
// disagree with its own (internal/agent): none may appear when the
// backdate covers the skew.
var skewSigns = []string{
	"installing a certificate this agent's clock says is not valid",
	"certificate arrived with most of its lifetime gone",
	"certificate request failed",
}

// clockSkew runs on the skew mesh, whose every certificate was issued
// across the skew (the first ones, at start) and whose every handshake is
// between proxies that disagree by twice it. Under the load, the control
// plane is SIGKILLed: the restarted one serves a fresh certificate that
// proxies behind it must accept, and checks the proxies' client
// certificates by its own clock. Then every proxy must hold a certificate
// valid by its clock, have renewed none (a skewed CA must not cause a
// renewal loop), have its next renewal about half a lifetime away, and
// have logged no skew warning. Recovery: kill to 4 proxies SYNCED.
func clockSkew(t *testing.T, m *mesh) (time.Duration, string) {
	old := m.cpPID()
	t0 := time.Now()
	signal(t, old, syscall.SIGKILL)
	waitFor(t, "control plane restarted", 30*time.Second, func() bool { p := m.cpPID(); return p != 0 && p != old })
	end := waitFor(t, "every proxy SYNCED with the new control plane", 30*time.Second, func() bool { return m.synced(4) })

	signs := 0
	for _, s := range skewSigns {
		signs += strings.Count(m.Logs(), s)
	}
	renewals := 0
	for name, w := range m.workloads {
		st, err := certStatus(w.admin)
		if err != nil {
			t.Errorf("%s: /debug/certs: %v", name, err)
			continue
		}
		renewals += st.Rotations
		// The proxy's next renewal, by its own clock, is scheduled from
		// when it installed the certificate (at most a minute ago) plus
		// half of what was left: at least 0.4 of a lifetime ahead of the
		// machine's clock, give or take the skew.
		in := time.Until(st.NextRenewal)
		if lo := *flagSkewCertTTL*2/5 - *flagSkew; skewCovered() && in < lo {
			t.Errorf("%s: next renewal in %s, want at least %s (a renewal loop in the making)", name, in.Round(time.Second), lo)
		}
	}
	if skewCovered() && (signs > 0 || renewals > 0) {
		t.Errorf("skew of %s within the backdate of %s certificates: %d skew warnings, %d renewals, want none\n%s",
			*flagSkew, *flagSkewCertTTL, signs, renewals, tail(m.Logs(), 40))
	}
	return end.Sub(t0), fmt.Sprintf("kill to 4 SYNCED; proxies %s ahead of and behind the CA, cert TTL %s; renewals %d, skew warnings %d",
		*flagSkew, *flagSkewCertTTL, renewals, signs)
}

// certState is the part of a proxy's /debug/certs (agent.Status) the
// skew fault reads.
type certState struct {
	Rotations   int       `json:"rotations"`
	NotBefore   time.Time `json:"notBefore"`
	NotAfter    time.Time `json:"notAfter"`
	NextRenewal time.Time `json:"nextRenewal"`
}

func certStatus(admin string) (certState, error) {
	var st certState
	resp, err := plain.Get("http://" + admin + "/debug/certs")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// skewFailsClosed is the clock-skew fault where the CA's backdate does not
// cover the skew (certificates shorter than ten times it): every
// certificate is expired or not yet valid by its holder's clock, so no
// proxy may report ready, and `zmesh up` must give up saying so, with
// the agents' logs naming the skew. There is no load to measure: nothing
// is served.
func skewFailsClosed(t *testing.T) {
	dir := t.TempDir()
	copyMesh(t, dir)
	const within = 20 * time.Second
	cmd := exec.Command(bins.zmesh, append([]string{"up", "--verbose", "-f", dir, "--ready-timeout", within.String()}, skewMeshArgs()...)...)
	cmd.Env = append(os.Environ(), "HTTP_PROXY=", "http_proxy=")
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(within + 30*time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("zmesh up neither ready nor given up %s after its ready time-out\n%s", 30*time.Second, tail(string(out), 40))
	}
	logs := string(out)
	os.WriteFile(filepath.Join(outDir(t), "mesh-skew.log"), out, 0o644)
	if err == nil || strings.Contains(logs, "zmesh: ready") {
		t.Fatalf("zmesh up became ready with %s certificates and %s of skew (err %v)\n%s", *flagSkewCertTTL, *flagSkew, err, tail(logs, 40))
	}
	for _, want := range []string{"proxies not ready", "installing a certificate this agent's clock says is not valid", "skew_at_least="} {
		if !strings.Contains(logs, want) {
			t.Errorf("zmesh up's output lacks %q\n%s", want, tail(logs, 40))
		}
	}
	t.Logf("clock-skew with %s certificates and %s of skew: never ready, %d skewed certificates installed for want of valid ones",
		*flagSkewCertTTL, *flagSkew, strings.Count(logs, "installing a certificate this agent's clock says is not valid"))
}
