package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// hostileLabel is a label value that would add an element to the page if
// any renderer (the server's HTML or the page's script) wrote it as markup.
const hostileLabel = `<img src=x onerror=document.title='xss'>`

// chromium returns the path of a Chromium to drive, or skips the test
// (fails it under CI, which installs Debian's chromium).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed (.ci/run installs Debian's chromium package)")
	}
	t.Skip("chromium is not installed: apt-get install chromium to run the web view test")
	return ""
}

// browser starts a headless Chromium with a fresh profile and returns a
// chromedp context for one tab; it stops with the test.
func browser(t *testing.T, exe string) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-proxy-server", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 1000),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(cancelAlloc)
	tab, cancelTab := chromedp.NewContext(alloc)
	t.Cleanup(cancelTab)
	return tab
}

// hostileMesh writes the quickstart with a hostile label on the backend.
func hostileMesh(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	src := "../../examples/quickstart"
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if e.Name() == "workloads.yaml" {
			s := strings.Replace(string(b), "    app: backend\n", "    app: backend\n    note: \""+hostileLabel+"\"\n", 1)
			if s == string(b) {
				t.Fatal("workloads.yaml has no backend label to extend")
			}
			b = []byte(s)
		}
		writeFile(t, filepath.Join(dir, e.Name()), string(b))
	}
	return dir
}

// metricValue sums the samples of name in a Prometheus exposition whose
// labels contain every one of want.
func metricValue(body, name string, want ...string) float64 {
	var sum float64
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, name+"{") {
			continue
		}
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(line, w)
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

var uiField = regexp.MustCompile(`zmesh: controlplane grpc=\S+ .* ui=(http://\S+/)`)

// TestWebViewInChromium runs `zmesh up`, sends frontend→backend requests
// (allowed) and stranger→backend requests (denied), and checks in a real
// headless Chromium that the web view at the address `zmesh up` printed
// shows the counts the backend's proxy reports on its own /metrics, the
// policies and certificates, explains the denial through its check form,
// and shows a hostile label as text. A screenshot is kept in
// testdata/out/webview.png.
func TestWebViewInChromium(t *testing.T) {
	exe := chromium(t)
	m := startMesh(t, "-f", hostileMesh(t))
	g := uiField.FindStringSubmatch(m.Logs())
	if g == nil {
		t.Fatalf("no ui= on the controlplane line:\n%s", m.Logs())
	}
	ui := g[1]
	frontend, stranger, backend := m.w("web/frontend"), m.w("web/stranger"), m.w("api/backend")

	const allowed, denied = 7, 4
	for range allowed {
		if r := call(t, frontend.app, "backend.api.svc.cluster.local/"); r.Status != 200 {
			t.Fatalf("frontend -> backend = %d", r.Status)
		}
	}
	for range denied {
		if r := call(t, stranger.app, "backend.api.svc.cluster.local/"); r.Status != 403 {
			t.Fatalf("stranger -> backend = %d", r.Status)
		}
	}
	metrics := get(t, "http://"+backend.admin+"/metrics")
	want200 := metricValue(metrics, "istio_requests_total", `reporter="destination"`, `source_workload="frontend"`, `response_code="200"`)
	want403 := metricValue(metrics, "istio_requests_total", `reporter="destination"`, `source_workload="stranger"`, `response_code="403"`, `response_flags="RBAC"`)
	if want200 < allowed || want403 != denied {
		t.Fatalf("backend's metrics: %v 200s from frontend, %v RBAC 403s from stranger; want >= %d and %d\n%s", want200, want403, allowed, denied, metrics)
	}

	tab := browser(t, exe)
	const fb = `#edges tr[data-src="web/frontend"][data-dst="api/backend"][data-protocol="http"]`
	const sb = `#edges tr[data-src="web/stranger"][data-dst="api/backend"][data-protocol="http"]`
	if err := chromedp.Do(tab, chromedp.Navigate(ui), chromedp.WaitVisible(chromedp.CSS(fb+" td.requests"))); err != nil {
		t.Fatalf("open %s: %v\n%s", ui, err, m.Logs())
	}
	// The page refreshes itself every 2 s: wait until it shows what the
	// backend's proxy counted.
	shows := fmt.Sprintf(`(() => { const a = document.querySelector(%q), b = document.querySelector(%q);
		return !!a && !!b && a.textContent === %q && b.textContent === %q })()`,
		fb+" td.requests", sb+" td.denied", strconv.Itoa(int(want200)), strconv.Itoa(int(want403)))
	if _, err := chromedp.Run(tab, chromedp.Poll[bool](shows, chromedp.WithPollingMutation(), chromedp.WithPollingTimeout(15*time.Second))); err != nil {
		var a, b string
		a, _ = chromedp.Run(tab, chromedp.Text(chromedp.CSS(fb+" td.requests")))
		b, _ = chromedp.Run(tab, chromedp.Text(chromedp.CSS(sb+" td.denied")))
		t.Fatalf("the page shows frontend->backend %q requests, stranger->backend %q denied; the backend's proxy counted %v and %v (%v)", a, b, want200, want403, err)
	}
	cells := map[string]string{}
	for _, sel := range []string{fb + " td.denied", fb + " td.security", sb + " td.requests", sb + " td.codes",
		`#workloads tr[data-key="api/backend"] td.labels`, `#workloads tr[data-key="api/backend"] td.cert`,
		`#workloads tr[data-key="api/backend"] td.mtls`, `#policies`, `#ca`} {
		s, err := chromedp.Run(tab, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("%s: %v", sel, err)
		}
		cells[sel] = s
	}
	for sel, want := range map[string]string{
		fb + " td.denied":   "0",
		fb + " td.security": "mutual_tls",
		sb + " td.requests": strconv.Itoa(int(want403)),
		sb + " td.codes":    "403:" + strconv.Itoa(int(want403)),
		`#workloads tr[data-key="api/backend"] td.labels`: "app=backend note=" + hostileLabel,
		`#workloads tr[data-key="api/backend"] td.mtls`:   "STRICT (istio-system/default)",
	} {
		if cells[sel] != want {
			t.Errorf("%s = %q, want %q", sel, cells[sel], want)
		}
	}
	if c := cells[`#workloads tr[data-key="api/backend"] td.cert`]; !strings.Contains(c, "(in 23h") {
		t.Errorf("backend certificate cell = %q, want an expiry about 24h away", c)
	}
	if c := cells["#ca"]; !strings.Contains(c, "root") || !strings.Contains(c, "signing") {
		t.Errorf("CA table = %q", c)
	}
	if p := cells["#policies"]; !strings.Contains(p, "api/backend-allow-frontend") || !strings.Contains(p, "ALLOW") {
		t.Errorf("policies table = %q", p)
	}

	// Live: requests sent while the page is open reach it through its own
	// refresh (the script), with a rate, and still equal the proxy's counts.
	for range 5 {
		call(t, frontend.app, "backend.api.svc.cluster.local/")
	}
	for range 2 {
		call(t, stranger.app, "backend.api.svc.cluster.local/")
	}
	metrics = get(t, "http://"+backend.admin+"/metrics")
	want200 = metricValue(metrics, "istio_requests_total", `reporter="destination"`, `source_workload="frontend"`, `response_code="200"`)
	want403 = metricValue(metrics, "istio_requests_total", `reporter="destination"`, `source_workload="stranger"`, `response_code="403"`, `response_flags="RBAC"`)
	live := fmt.Sprintf(`(() => { const a = document.querySelector(%q), b = document.querySelector(%q), r = document.querySelector(%q);
		return !!a && !!b && !!r && a.textContent === %q && b.textContent === %q && parseFloat(r.textContent) > 0 })()`,
		fb+" td.requests", sb+" td.denied", fb+" td.rate", strconv.Itoa(int(want200)), strconv.Itoa(int(want403)))
	if _, err := chromedp.Run(tab, chromedp.Poll[bool](live, chromedp.WithPollingMutation(), chromedp.WithPollingTimeout(15*time.Second))); err != nil {
		a, _ := chromedp.Run(tab, chromedp.Text(chromedp.CSS(fb+" td.requests")))
		r, _ := chromedp.Run(tab, chromedp.Text(chromedp.CSS(fb+" td.rate")))
		t.Fatalf("after more requests the page shows %q requests at %q/s; the backend's proxy counted %v (%v)", a, r, want200, err)
	}

	// The check form explains the denial as zmesh check does.
	err := chromedp.Do(tab,
		chromedp.SetValue(chromedp.CSS(`#check select`), "api/backend"),
		chromedp.SetValue(chromedp.CSS(`#check input[name="principal"]`), "cluster.local/ns/web/sa/stranger"),
		chromedp.SetValue(chromedp.CSS(`#check input[name="host"]`), "backend.api.svc.cluster.local"),
		chromedp.Click(chromedp.CSS(`#check button`)),
		chromedp.WaitVisible(chromedp.CSS(`#check-result[data-decision]`)),
	)
	if err != nil {
		t.Fatal(err)
	}
	verdict, err := chromedp.Run(tab, chromedp.Text(chromedp.CSS(`#check-result`)))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(verdict, "DENY at authorization") || !strings.Contains(verdict, "no ALLOW policy matched (policies in force: api/backend-allow-frontend)") {
		t.Errorf("check form says %q", verdict)
	}

	// The hostile label stayed text through both renderers (the server's
	// HTML, then the script's refreshes).
	foreign, err := chromedp.Run(tab, chromedp.Evaluate[int](`document.querySelectorAll("img,svg,iframe,object,embed").length`))
	if err != nil {
		t.Fatal(err)
	}
	title, err := chromedp.Run(tab, chromedp.Title())
	if err != nil {
		t.Fatal(err)
	}
	if foreign != 0 || title == "xss" {
		t.Errorf("the hostile label became markup: %d foreign elements, title %q", foreign, title)
	}

	png, err := chromedp.Run(tab, chromedp.FullScreenshot(100)) // 100: PNG
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join("testdata", "out")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(out, "webview.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(shot)
	t.Logf("screenshot: %s (%d bytes)", abs, len(png))
}
