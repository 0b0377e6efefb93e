package main

import (
	"bytes"
	"encoding/xml"
	"math"
	"os"
	"strings"
	"testing"
)

// TestPercentilesAsFortio: fortio reports p50, p90, p99 and p99.9 of its
// own histogram; at gives the same from the buckets (a run of
// bench/latency.sh's mesh case, trimmed to what plot reads).
func TestPercentilesAsFortio(t *testing.T) {
	f, err := os.Open("testdata/mesh.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := read(f)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ p, fortio float64 }{
		{50, 0.0003972727272727273}, {90, 0.0005973733003708283}, {99, 0.002672222222222225}, {99.9, 0.006611111111111243},
	} {
		if got := r.Histogram.at(tt.p); math.Abs(got-tt.fortio) > 1e-9 {
			t.Errorf("p%v = %v s, fortio says %v", tt.p, got, tt.fortio)
		}
	}
	if r.RequestedQPS != "1000" || r.NumThreads != 16 {
		t.Errorf("run = %s qps, %d connections", r.RequestedQPS, r.NumThreads)
	}
}

func TestAt(t *testing.T) {
	h := histogram{Count: 10}
	h.Data = append(h.Data,
		struct{ Start, End, Percent float64 }{0.001, 0.002, 50},
		struct{ Start, End, Percent float64 }{0.002, 0.004, 50},
		struct{ Start, End, Percent float64 }{0.004, 0.008, 100},
	)
	for _, tt := range []struct{ p, want float64 }{
		{25, 0.0015}, {50, 0.002}, {75, 0.006}, {100, 0.008},
	} {
		if got := h.at(tt.p); math.Abs(got-tt.want) > 1e-12 {
			t.Errorf("at(%v) = %v, want %v", tt.p, got, tt.want)
		}
	}
}

func TestReadRefuses(t *testing.T) {
	for name, in := range map[string]string{
		"not JSON":      "{",
		"no requests":   `{"DurationHistogram":{"Count":0,"Data":[]}}`,
		"falling":       `{"DurationHistogram":{"Count":2,"Data":[{"Start":0,"End":1,"Percent":60},{"Start":1,"End":2,"Percent":50}]}}`,
		"reversed":      `{"DurationHistogram":{"Count":1,"Data":[{"Start":2,"End":1,"Percent":100}]}}`,
		"overlapping":   `{"DurationHistogram":{"Count":2,"Data":[{"Start":0,"End":2,"Percent":50},{"Start":1,"End":3,"Percent":100}]}}`,
		"over 100":      `{"DurationHistogram":{"Count":1,"Data":[{"Start":0,"End":1,"Percent":101}]}}`,
		"negative time": `{"DurationHistogram":{"Count":1,"Data":[{"Start":-1,"End":1,"Percent":100}]}}`,
	} {
		if _, err := read(strings.NewReader(in)); err == nil {
			t.Errorf("%s: read accepted %s", name, in)
		}
	}
}

// TestDrawIsSVG: the picture is well-formed XML with a curve per case.
func TestDrawIsSVG(t *testing.T) {
	var b bytes.Buffer
	cs := []curve{{name: "mesh", color: "#000"}, {name: "haproxy & <peer>", color: "#111"}}
	for range percentiles {
		cs[0].ms = append(cs[0].ms, 0.4)
		cs[1].ms = append(cs[1].ms, 12)
	}
	draw(&b, "title <&>", cs)
	d := xml.NewDecoder(&b)
	lines := 0
	for {
		tok, err := d.Token()
		if err != nil {
			if err.Error() != "EOF" {
				t.Fatalf("not well-formed: %v", err)
			}
			break
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "polyline" {
			lines++
		}
	}
	if lines != 2 {
		t.Errorf("%d curves, want 2", lines)
	}
}

func FuzzRead(f *testing.F) {
	if b, err := os.ReadFile("testdata/mesh.json"); err == nil {
		f.Add(b)
	}
	f.Add([]byte(`{"DurationHistogram":{"Count":1,"Data":[{"Start":0,"End":1,"Percent":100}]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := read(bytes.NewReader(b))
		if err != nil {
			return
		}
		prev := 0.0
		for _, p := range percentiles {
			v := r.Histogram.at(p)
			if math.IsNaN(v) || v < prev-1e-12 {
				t.Fatalf("at(%v) = %v after %v", p, v, prev)
			}
			prev = v
		}
	})
}
