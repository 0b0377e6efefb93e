package tracing

import (
	"strings"
	"testing"
)

const (
	tpTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	tpSpan  = "00f067aa0ba902b7"
)

func TestParseTraceparent(t *testing.T) {
	cases := []struct {
		name    string
		in      string
		wantErr bool
		want    Decision
	}{
		{"sampled", "00-" + tpTrace + "-" + tpSpan + "-01", false, Sampled},
		{"not sampled", "00-" + tpTrace + "-" + tpSpan + "-00", false, NotSampled},
		{"other flag bits ignored", "00-" + tpTrace + "-" + tpSpan + "-09", false, Sampled},
		{"future version with more fields", "cc-" + tpTrace + "-" + tpSpan + "-01-what-comes", false, Sampled},
		{"future version exact", "01-" + tpTrace + "-" + tpSpan + "-00", false, NotSampled},
		{"version 00 with trailing data", "00-" + tpTrace + "-" + tpSpan + "-01-x", true, 0},
		{"future version glued data", "01-" + tpTrace + "-" + tpSpan + "-01x", true, 0},
		{"version ff", "ff-" + tpTrace + "-" + tpSpan + "-01", true, 0},
		{"zero trace ID", "00-" + strings.Repeat("0", 32) + "-" + tpSpan + "-01", true, 0},
		{"zero span ID", "00-" + tpTrace + "-" + strings.Repeat("0", 16) + "-01", true, 0},
		{"upper case", "00-" + strings.ToUpper(tpTrace) + "-" + tpSpan + "-01", true, 0},
		{"short", "00-" + tpTrace[:31] + "-" + tpSpan + "-01", true, 0},
		{"bad separator", "00_" + tpTrace + "-" + tpSpan + "-01", true, 0},
		{"not hex", "00-" + tpTrace[:31] + "g-" + tpSpan + "-01", true, 0},
		{"empty", "", true, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sc, err := ParseTraceparent(tc.in)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("accepted %q", tc.in)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if sc.TraceID.String() != tpTrace || sc.SpanID.String() != tpSpan || sc.Decision != tc.want || sc.Format != W3C {
				t.Errorf("got %+v", sc)
			}
		})
	}
}

func TestTraceparentRoundTrip(t *testing.T) {
	g := IDs{}
	for _, sampled := range []bool{true, false} {
		tr, sp := g.TraceID(), g.SpanID()
		s := FormatTraceparent(tr, sp, sampled)
		sc, err := ParseTraceparent(s)
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		if sc.TraceID != tr || sc.SpanID != sp || (sc.Decision == Sampled) != sampled {
			t.Errorf("%s parsed as %+v", s, sc)
		}
	}
}

func TestParseB3(t *testing.T) {
	cases := []struct {
		name      string
		in        B3
		wantErr   bool
		wantTrace string
		want      Decision
		debug     bool
		valid     bool
	}{
		{"128-bit sampled", B3{TraceID: tpTrace, SpanID: tpSpan, Sampled: "1"}, false, tpTrace, Sampled, false, true},
		{"64-bit widened", B3{TraceID: tpSpan, SpanID: tpSpan, Sampled: "0"}, false, strings.Repeat("0", 16) + tpSpan, NotSampled, false, true},
		{"no decision", B3{TraceID: tpTrace, SpanID: tpSpan}, false, tpTrace, Undecided, false, true},
		{"debug implies sampled", B3{TraceID: tpTrace, SpanID: tpSpan, Flags: "1"}, false, tpTrace, Sampled, true, true},
		{"legacy true", B3{TraceID: tpTrace, SpanID: tpSpan, Sampled: "true"}, false, tpTrace, Sampled, false, true},
		{"upper-case hex", B3{TraceID: strings.ToUpper(tpTrace), SpanID: tpSpan}, false, tpTrace, Undecided, false, true},
		{"with parent", B3{TraceID: tpTrace, SpanID: tpSpan, ParentSpanID: tpSpan}, false, tpTrace, Undecided, false, true},
		{"decision only", B3{Sampled: "0"}, false, strings.Repeat("0", 32), NotSampled, false, false},
		{"nothing", B3{}, true, "", 0, false, false},
		{"span without trace", B3{SpanID: tpSpan}, true, "", 0, false, false},
		{"bad sampled", B3{TraceID: tpTrace, SpanID: tpSpan, Sampled: "yes"}, true, "", 0, false, false},
		{"bad flags", B3{TraceID: tpTrace, SpanID: tpSpan, Flags: "2"}, true, "", 0, false, false},
		{"bad parent", B3{TraceID: tpTrace, SpanID: tpSpan, ParentSpanID: "x"}, true, "", 0, false, false},
		{"trace ID of 20 digits", B3{TraceID: tpTrace[:20], SpanID: tpSpan}, true, "", 0, false, false},
		{"zero span", B3{TraceID: tpTrace, SpanID: strings.Repeat("0", 16)}, true, "", 0, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sc, err := ParseB3(tc.in)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("accepted %+v", tc.in)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if sc.TraceID.String() != tc.wantTrace || sc.Decision != tc.want || sc.Debug != tc.debug || sc.IsValid() != tc.valid || sc.Format != B3Multi {
				t.Errorf("got %+v", sc)
			}
		})
	}
}

func TestParseB3Single(t *testing.T) {
	cases := []struct {
		in      string
		wantErr bool
		want    Decision
		debug   bool
		valid   bool
	}{
		{tpTrace + "-" + tpSpan, false, Undecided, false, true},
		{tpTrace + "-" + tpSpan + "-1", false, Sampled, false, true},
		{tpTrace + "-" + tpSpan + "-0-" + tpSpan, false, NotSampled, false, true},
		{tpSpan + "-" + tpSpan + "-d", false, Sampled, true, true},
		{"0", false, NotSampled, false, false},
		{"d", false, Sampled, true, false},
		{"2", true, 0, false, false},
		{tpTrace + "-" + tpSpan + "-x", true, 0, false, false},
		{tpTrace + "-" + tpSpan + "-1-zz", true, 0, false, false},
		{tpTrace, true, 0, false, false},
		{"", true, 0, false, false},
	}
	for _, tc := range cases {
		sc, err := ParseB3Single(tc.in)
		if tc.wantErr {
			if err == nil {
				t.Errorf("accepted %q", tc.in)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if sc.Decision != tc.want || sc.Debug != tc.debug || sc.IsValid() != tc.valid {
			t.Errorf("%q: got %+v", tc.in, sc)
		}
	}
}

func TestFormatB3(t *testing.T) {
	var tr TraceID
	var sp, parent SpanID
	decodeHex(tr[:], tpTrace)
	decodeHex(sp[:], tpSpan)
	parent[7] = 1
	h := FormatB3(tr, sp, parent, true, false)
	if h != (B3{TraceID: tpTrace, SpanID: tpSpan, ParentSpanID: "0000000000000001", Sampled: "1"}) {
		t.Errorf("multi = %+v", h)
	}
	short := TraceID{}
	copy(short[8:], sp[:])
	if h := FormatB3(short, sp, SpanID{}, false, false); h.TraceID != tpSpan || h.ParentSpanID != "" || h.Sampled != "0" {
		t.Errorf("64-bit trace: %+v", h)
	}
	if h := FormatB3(tr, sp, SpanID{}, true, true); h.Flags != "1" || h.Sampled != "" {
		t.Errorf("debug: %+v", h)
	}
	if s := FormatB3Single(tr, sp, parent, false, false); s != tpTrace+"-"+tpSpan+"-0-0000000000000001" {
		t.Errorf("single = %s", s)
	}
	sc, err := ParseB3Single(FormatB3Single(tr, sp, SpanID{}, true, true))
	if err != nil || sc.TraceID != tr || sc.SpanID != sp || !sc.Debug {
		t.Errorf("single round trip: %+v %v", sc, err)
	}
}
