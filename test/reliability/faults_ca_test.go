package reliability

import (
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// rootRotation replaces the mesh root with `zmesh ca rotate` (prepare,
// activate, retire), each step taken as soon as the CLI allows it, with
// --wait one certificate lifetime, never --force. Recovery: from prepare
// until every proxy's bundle holds only the new root.
func rootRotation(t *testing.T, m *mesh) (time.Duration, string) {
	t0 := time.Now()
	for _, step := range []string{"prepare", "activate", "retire"} {
		deadline := time.Now().Add(*flagCertTTL + 20*time.Second)
		for {
			out, err := exec.Command(bins.zmesh, "ca", "rotate", "--data-dir", m.dataDir,
				"--step", step, "--wait", flagCertTTL.String()).CombinedOutput()
			if err == nil {
				break
			}
			if !strings.Contains(string(out), "too early") || time.Now().After(deadline) {
				t.Fatalf("zmesh ca rotate --step %s: %v\n%s", step, err, out)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	root, err := os.ReadFile(filepath.Join(m.dataDir, "root-cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	end := waitFor(t, "every proxy trusts only the new root", 30*time.Second, func() bool {
		for _, w := range m.workloads {
			if b := bundle(w.admin); len(b) != 1 || b[0] != onlyPEM(root) {
				return false
			}
		}
		return true
	})
	return end.Sub(t0), "prepare to every bundle holding only the new root (3 steps, --wait = cert TTL)"
}

// bundle returns the roots in a proxy's trust bundle, as base64 DER.
func bundle(admin string) []string {
	resp, err := plain.Get("http://" + admin + "/debug/certs")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var st struct {
		BundlePEM string `json:"bundlePEM"`
	}
	if json.NewDecoder(resp.Body).Decode(&st) != nil {
		return nil
	}
	var roots []string
	rest := []byte(st.BundlePEM)
	for {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			return roots
		}
		roots = append(roots, string(b.Bytes))
	}
}

func onlyPEM(b []byte) string {
	p, _ := pem.Decode(b)
	if p == nil {
		return ""
	}
	return string(p.Bytes)
}

// dataDirFault makes the control plane's data dir (a tmpfs of its own)
// read-only or full, then asks for what needs a write: a root rotation
// (must be refused with a reason) and a control plane restart (SIGKILL).
// Then it heals the dir. Recovery: from the heal until the control plane
// lists every proxy SYNCED.
func dataDirFault(t *testing.T, m *mesh, how string) (time.Duration, string) {
	dir := m.dataDir
	filler := filepath.Join(dir, "filler")
	switch how {
	case "readonly":
		mount(t, "-o", "remount,ro", dir)
	case "full":
		fillDir(t, filler)
	}
	healed := false
	heal := func() {
		if healed {
			return
		}
		healed = true
		switch how {
		case "readonly":
			mount(t, "-o", "remount,rw", dir)
		case "full":
			os.Remove(filler)
		}
	}
	defer heal()

	var notes []string
	out, err := exec.Command(bins.zmesh, "ca", "rotate", "--data-dir", dir, "--step", "prepare", "--force").CombinedOutput()
	if err == nil {
		t.Errorf("zmesh ca rotate --step prepare succeeded on a %s data dir:\n%s", how, out)
	} else {
		notes = append(notes, "rotate refused: "+firstLine(string(out)))
	}
	old := m.cpPID()
	signal(t, old, syscall.SIGKILL)
	cameBack := false
	deadline := time.Now().Add(*flagCertTTL)
	for time.Now().Before(deadline) {
		if p := m.cpPID(); p != 0 && p != old && m.synced(4) {
			cameBack = true
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if cameBack {
		notes = append(notes, "restarted control plane served on it")
	} else {
		notes = append(notes, "control plane not serving on it within a cert TTL")
	}
	t0 := time.Now()
	heal()
	end := waitFor(t, "every proxy SYNCED after the data dir healed", 60*time.Second, func() bool { return m.synced(4) })
	t.Logf("warnings and errors logged about the data dir:\n%s", problems(m.Logs(), dir, 10))
	return end.Sub(t0), strings.Join(notes, "; ") + "; recovery: heal to 4 SYNCED"
}

func mount(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("mount", args...).CombinedOutput(); err != nil {
		t.Fatalf("mount %v: %v %s", args, err, out)
	}
}

// fillDir writes path until its file system is full.
func fillDir(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	for _, n := range []int{4096, 512, 1} { // the last partial blocks
		for {
			if _, err := f.Write(buf[:n]); err != nil {
				break
			}
		}
	}
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return strings.ReplaceAll(s, "|", "/")
}

// problems returns up to n lines of logs at warning or error level that
// hold word.
func problems(logs, word string, n int) string {
	var out []string
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, word) && (strings.Contains(l, "WARN") || strings.Contains(l, "ERROR")) {
			out = append(out, l)
		}
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return strings.Join(out, "\n")
}
