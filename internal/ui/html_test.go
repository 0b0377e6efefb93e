package ui

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"
)

// hostile are names an attacker could give a workload, label, service,
// policy or peer, each trying to break out of where the page puts it.
var hostile = []string{
	`</td></tr></table><script>alert(1)</script>`,
	`"><img src=x onerror=alert(2)>`,
	`'><svg	onload=alert(3)>`,
	`</style></script><script>alert(4)</script>`,
	`<!--`,
	`&lt;b&gt;already escaped`,
	"javascript:alert(5)",
}

func hostileModel() *Model {
	m := &Model{Generated: time.Unix(1000, 0), TrustDomain: hostile[0], ConfigVersion: hostile[1]}
	for i, h := range hostile {
		m.Workloads = append(m.Workloads, Workload{Key: "ns/" + h, Identity: "spiffe://cluster.local/ns/x/sa/" + h, Labels: map[string]string{"app": h},
			Connected: true, ConfigVersion: h, LastNack: h, MTLSMode: "STRICT", MTLSPolicy: h, PortModes: []string{h},
			Denied: map[string]float64{h: float64(i)}, MetricsError: h})
		m.Edges = append(m.Edges, Edge{Source: h, SourcePrincipal: h, Destination: h, DestinationPrincipal: h, Service: h, Protocol: h,
			Security: h, Reporter: h, Requests: 1, Codes: map[string]float64{h: 1}})
		m.Policies = append(m.Policies, Policy{Kind: h, Namespace: h, Name: h, Action: h, Selects: []string{h}})
		m.CA = append(m.CA, CACert{Role: h, Subject: h})
	}
	return m
}

// allowedElements are the only elements the page may contain.
var allowedElements = map[string]bool{"html": true, "head": true, "meta": true, "title": true, "style": true, "body": true, "h1": true, "h2": true,
	"p": true, "table": true, "thead": true, "tbody": true, "tr": true, "th": true, "td": true, "form": true, "label": true, "select": true,
	"option": true, "input": true, "button": true, "pre": true, "script": true}

func TestRenderEscapesHostileNames(t *testing.T) {
	page := Render(hostileModel())
	z := html.NewTokenizer(bytes.NewReader(page))
	var scripts, styles []string
	var texts, attrs []string
	inScript, inStyle := false, false
	for {
		tt := z.Next()
		if tt == html.ErrorToken {
			if z.Err() != io.EOF {
				t.Fatal(z.Err())
			}
			break
		}
		tok := z.Token()
		switch tt {
		case html.StartTagToken, html.SelfClosingTagToken:
			if !allowedElements[tok.Data] {
				t.Errorf("element <%s> in the page: markup from a name was not escaped", tok.Data)
			}
			for _, a := range tok.Attr {
				if strings.HasPrefix(a.Key, "on") || a.Key == "src" || a.Key == "href" || a.Key == "style" {
					t.Errorf("attribute %s=%q on <%s>", a.Key, a.Val, tok.Data)
				}
				attrs = append(attrs, a.Val)
			}
			inScript, inStyle = tok.Data == "script", tok.Data == "style"
		case html.EndTagToken:
			inScript, inStyle = false, false
		case html.TextToken:
			switch {
			case inScript:
				scripts = append(scripts, tok.Data)
			case inStyle:
				styles = append(styles, tok.Data)
			default:
				texts = append(texts, tok.Data)
			}
		case html.CommentToken:
			t.Errorf("comment in the page: %q", tok.Data)
		}
	}
	if len(scripts) != 1 || scripts[0] != script {
		t.Errorf("the page has %d scripts, or its script is not ours", len(scripts))
	}
	if len(styles) != 1 || styles[0] != style {
		t.Errorf("the page has %d styles, or its style is not ours", len(styles))
	}
	// Each hostile name is on the page, as text, exactly as given.
	allText := strings.Join(texts, "\x00")
	for _, h := range hostile {
		if !strings.Contains(allText, h) {
			t.Errorf("name %q is not shown as text", h)
		}
		found := false
		for _, a := range attrs {
			if a == h || a == "ns/"+h {
				found = true
			}
		}
		if !found {
			t.Errorf("name %q is not kept as given in attributes", h)
		}
	}
}

func TestContentSecurityPolicyAllowsOnlyThePageScript(t *testing.T) {
	for _, want := range []string{"default-src 'none'", "script-src '" + hashOf(script) + "'", "style-src '" + hashOf(style) + "'", "connect-src 'self'"} {
		if !strings.Contains(ContentSecurityPolicy, want) {
			t.Errorf("CSP %q lacks %q", ContentSecurityPolicy, want)
		}
	}
	if strings.Contains(ContentSecurityPolicy, "unsafe") {
		t.Errorf("CSP allows unsafe sources: %q", ContentSecurityPolicy)
	}
}

func TestDuration(t *testing.T) {
	for _, tc := range []struct {
		sec  float64
		want string
	}{{0, "0m0s"}, {59, "0m59s"}, {3599, "59m59s"}, {86399, "23h59m"}, {90000, "1d1h"}, {-61, "-1m1s"}} {
		if got := duration(tc.sec); got != tc.want {
			t.Errorf("duration(%v) = %q, want %q", tc.sec, got, tc.want)
		}
	}
}
