package tracing

import "testing"

// FuzzParseTraceparent checks that no header value panics the parser, and
// that what it accepts is a valid context that formats back to a header
// it accepts with the same IDs.
func FuzzParseTraceparent(f *testing.F) {
	f.Add("00-" + tpTrace + "-" + tpSpan + "-01")
	f.Add("cc-" + tpTrace + "-" + tpSpan + "-00-extra")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		sc, err := ParseTraceparent(s)
		if err != nil {
			return
		}
		if !sc.IsValid() || sc.Decision == Undecided {
			t.Fatalf("accepted %q as %+v", s, sc)
		}
		again, err := ParseTraceparent(FormatTraceparent(sc.TraceID, sc.SpanID, sc.Decision == Sampled))
		if err != nil || again.TraceID != sc.TraceID || again.SpanID != sc.SpanID || again.Decision != sc.Decision {
			t.Fatalf("%q: round trip %+v, %v", s, again, err)
		}
	})
}

// FuzzParseB3 checks both B3 forms: no panic, and accepted contexts with
// IDs survive formatting and parsing again.
func FuzzParseB3(f *testing.F) {
	f.Add(tpTrace, tpSpan, "", "1", "", tpTrace+"-"+tpSpan+"-1-"+tpSpan)
	f.Add(tpSpan, tpSpan, tpSpan, "0", "1", "d")
	f.Fuzz(func(t *testing.T, traceID, spanID, parent, sampled, flags, single string) {
		for _, parse := range []func() (SpanContext, error){
			func() (SpanContext, error) {
				return ParseB3(B3{TraceID: traceID, SpanID: spanID, ParentSpanID: parent, Sampled: sampled, Flags: flags})
			},
			func() (SpanContext, error) { return ParseB3Single(single) },
		} {
			sc, err := parse()
			if err != nil {
				continue
			}
			if !sc.IsValid() {
				if sc.Decision == Undecided {
					t.Fatalf("accepted a context with neither IDs nor a decision: %+v", sc)
				}
				continue
			}
			h := FormatB3(sc.TraceID, sc.SpanID, SpanID{}, sc.Decision == Sampled, sc.Debug)
			again, err := ParseB3(h)
			if err != nil || again.TraceID != sc.TraceID || again.SpanID != sc.SpanID {
				t.Fatalf("round trip of %+v: %+v, %v", sc, again, err)
			}
		}
	})
}
