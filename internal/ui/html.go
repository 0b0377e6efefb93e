package ui

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"html"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// page writes HTML. Markup goes through raw, which takes only constants of
// this file; everything from the mesh goes through text or attr, which
// escape it. html/template is not used: it would make the zmesh binary
// keep every exported method of every type (see cmd/zmesh's
// TestReleaseBuildDeps).
type page struct{ b strings.Builder }

func (p *page) raw(s string) { p.b.WriteString(s) }

// text writes s escaped for element content and quoted attribute values.
func (p *page) text(s string) { p.b.WriteString(html.EscapeString(s)) }

// cell writes <td class="class">text</td>.
func (p *page) cell(class, s string) {
	p.raw(`<td class="`)
	p.raw(class)
	p.raw(`">`)
	p.text(s)
	p.raw(`</td>`)
}

// Render returns the page for m: complete with the current data, and a
// script that refreshes it from the JSON every two seconds.
func Render(m *Model) []byte {
	var p page
	p.raw(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>zmesh</title><style>`)
	p.raw(style)
	p.raw(`</style></head><body><h1>zmesh</h1><p id="meta">`)
	p.text(metaLine(m))
	p.raw(`</p><p id="status"></p>`)

	p.raw(`<h2>Workloads</h2><table id="workloads"><thead><tr><th>workload</th><th>labels</th><th>identity</th><th>mTLS</th><th>proxy</th><th>certificate</th><th>denied</th></tr></thead><tbody>`)
	for _, w := range m.Workloads {
		p.raw(`<tr data-key="`)
		p.text(w.Key)
		p.raw(`">`)
		for i, c := range workloadCells(w, m.Generated) {
			p.cell(workloadClasses[i], c)
		}
		p.raw(`</tr>`)
	}
	p.raw(`</tbody></table>`)

	p.raw(`<h2>Edges</h2><table id="edges"><thead><tr><th>source</th><th>destination</th><th>service</th><th>protocol</th><th>mTLS</th><th>requests</th><th>req/s</th><th>denied</th><th>denied/s</th><th>5xx</th><th>codes</th></tr></thead><tbody>`)
	for _, e := range m.Edges {
		p.raw(`<tr data-src="`)
		p.text(e.Source)
		p.raw(`" data-dst="`)
		p.text(e.Destination)
		p.raw(`" data-protocol="`)
		p.text(e.Protocol)
		p.raw(`">`)
		for i, c := range edgeCells(e) {
			p.cell(edgeClasses[i], c)
		}
		p.raw(`</tr>`)
	}
	p.raw(`</tbody></table>`)

	p.raw(`<h2>Policies</h2><table id="policies"><thead><tr><th>kind</th><th>policy</th><th>action / mode</th><th>rules</th><th>applies to</th></tr></thead><tbody>`)
	for _, pol := range m.Policies {
		p.raw(`<tr>`)
		for i, c := range policyCells(pol) {
			p.cell(policyClasses[i], c)
		}
		p.raw(`</tr>`)
	}
	p.raw(`</tbody></table>`)

	p.raw(`<h2>Certificate authority</h2><table id="ca"><thead><tr><th>role</th><th>subject</th><th>expires</th></tr></thead><tbody>`)
	for _, c := range m.CA {
		p.raw(`<tr>`)
		for i, v := range caCells(c) {
			p.cell(caClasses[i], v)
		}
		p.raw(`</tr>`)
	}
	p.raw(`</tbody></table>`)

	p.raw(`<h2>Why was a request denied?</h2><form id="check">`)
	p.raw(`<label>workload <select name="workload">`)
	for _, w := range m.Workloads {
		p.raw(`<option value="`)
		p.text(w.Key)
		p.raw(`">`)
		p.text(w.Key)
		p.raw(`</option>`)
	}
	p.raw(`</select></label> <label>source principal <input name="principal" size="40" placeholder="cluster.local/ns/web/sa/frontend"></label> `)
	p.raw(`<label>port <input name="port" type="number" value="8080" min="1" max="65535"></label> <label>method <input name="method" value="GET" size="6"></label> `)
	p.raw(`<label>host <input name="host" size="28"></label> <label>path <input name="path" value="/" size="16"></label> <button type="submit">check</button></form>`)
	p.raw(`<pre id="check-result"></pre><script>`)
	p.raw(script)
	p.raw(`</script></body></html>`)
	return []byte(p.b.String())
}

func metaLine(m *Model) string {
	return fmt.Sprintf("trust domain %s · config %s · %d workloads · updated %s",
		m.TrustDomain, orDash(m.ConfigVersion), len(m.Workloads), m.Generated.UTC().Format(time.TimeOnly))
}

var (
	workloadClasses = []string{"key", "labels", "identity", "mtls", "proxy", "cert", "denied"}
	edgeClasses     = []string{"src", "dst", "service", "protocol", "security", "requests", "rate", "denied", "denied-rate", "errors", "codes"}
	policyClasses   = []string{"kind", "name", "action", "rules", "selects"}
	caClasses       = []string{"role", "subject", "expires"}
)

// workloadCells, edgeCells and policyCells are the text of each row's
// cells; the script computes the same from the JSON.
func workloadCells(w Workload, now time.Time) []string {
	mtls := w.MTLSMode
	if w.MTLSPolicy != "" {
		mtls += " (" + w.MTLSPolicy + ")"
	}
	if len(w.PortModes) > 0 {
		mtls += " ports " + strings.Join(w.PortModes, " ")
	}
	proxy := "not connected"
	if w.Connected {
		proxy = "connected, "
		if w.Synced {
			proxy += "in sync"
		} else {
			proxy += "not in sync"
		}
		if w.ConfigVersion != "" {
			proxy += " @" + w.ConfigVersion
		}
		if w.LastNack != "" {
			proxy += "; refused: " + w.LastNack
		}
	}
	cert := "-"
	if w.Cert != nil {
		cert = w.Cert.NotAfter.UTC().Format(time.DateTime) + " (in " + duration(w.Cert.ExpiresIn) + ", " + num(w.Cert.Rotations) + " rotations"
		if w.Cert.RenewalFailures > 0 {
			cert += ", " + num(w.Cert.RenewalFailures) + " failed renewals"
		}
		cert += ")"
	}
	if w.MetricsError != "" {
		cert = "metrics: " + w.MetricsError
	}
	labels := make([]string, 0, len(w.Labels))
	for k, v := range w.Labels {
		labels = append(labels, k+"="+v)
	}
	sort.Strings(labels)
	return []string{w.Key, strings.Join(labels, " "), w.Identity, mtls, proxy, cert, deniedText(w.Denied)}
}

func deniedText(d map[string]float64) string {
	if len(d) == 0 {
		return "0"
	}
	keys := make([]string, 0, len(d))
	var total float64
	for k, v := range d {
		keys = append(keys, k)
		total += v
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		name := k
		if name == "" {
			name = "no ALLOW matched"
		}
		parts = append(parts, name+": "+num(d[k]))
	}
	return num(total) + " (" + strings.Join(parts, ", ") + ")"
}

func edgeCells(e Edge) []string {
	codes := make([]string, 0, len(e.Codes))
	for c := range e.Codes {
		codes = append(codes, c)
	}
	sort.Strings(codes)
	for i, c := range codes {
		codes[i] = c + ":" + num(e.Codes[c])
	}
	return []string{e.Source, e.Destination, orDash(e.Service), e.Protocol, e.Security,
		num(e.Requests), strconv.FormatFloat(e.Rate, 'f', 2, 64), num(e.Denied), strconv.FormatFloat(e.DeniedRate, 'f', 2, 64),
		num(e.Errors), strings.Join(codes, " ")}
}

func policyCells(p Policy) []string {
	action := p.Action
	if p.DryRun {
		action += " (dry run)"
	}
	sel := strings.Join(p.Selects, " ")
	if sel == "" {
		sel = "no workload"
	}
	return []string{p.Kind, p.Namespace + "/" + p.Name, orDash(action), strconv.Itoa(p.Rules), sel}
}

func caCells(c CACert) []string {
	return []string{c.Role, c.Subject, c.NotAfter.Format(time.DateTime) + " (in " + duration(c.ExpiresIn) + ")"}
}

func num(f float64) string {
	if f == math.Trunc(f) && math.Abs(f) < 1e15 {
		return strconv.FormatFloat(f, 'f', 0, 64)
	}
	return strconv.FormatFloat(f, 'f', 2, 64)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// duration writes seconds as "3d4h", "5h2m", "4m10s" or "-1m0s" (expired).
func duration(sec float64) string {
	d := time.Duration(sec) * time.Second
	sign := ""
	if d < 0 {
		sign, d = "-", -d
	}
	days, h, m, s := d/(24*time.Hour), d%(24*time.Hour)/time.Hour, d%time.Hour/time.Minute, d%time.Minute/time.Second
	switch {
	case days > 0:
		return fmt.Sprintf("%s%dd%dh", sign, days, h)
	case h > 0:
		return fmt.Sprintf("%s%dh%dm", sign, h, m)
	default:
		return fmt.Sprintf("%s%dm%ds", sign, m, s)
	}
}

// ContentSecurityPolicy allows the page's own inline style and script (by
// hash) and requests to its own origin, nothing else: should a name from
// the mesh ever slip through unescaped, no script it carries would run.
var ContentSecurityPolicy = "default-src 'none'; script-src '" + hashOf(script) + "'; style-src '" + hashOf(style) +
	"'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

func hashOf(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256-" + base64.StdEncoding.EncodeToString(sum[:])
}

const style = `body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;margin-bottom:1em}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}th{background:#f2f2f2}
td.requests,td.rate,td.denied,td.denied-rate,td.errors,td.rules{text-align:right}
tr.denying td.denied{background:#fde2e2}td.security{font-family:monospace}#status{color:#a00}
pre{background:#f7f7f7;padding:.5em}label{margin-right:.5em}`
