package tracing_test

import (
	"fmt"

	"github.com/zmesh/zmesh/internal/tracing"
)

// A proxy continues the trace of an incoming traceparent: same trace, its
// own span as the next hop's parent, the upstream's sampling decision
// kept whatever the configured rate.
func Example() {
	in, err := tracing.ParseTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	if err != nil {
		panic(err)
	}
	sampled := tracing.Sample(in.Decision, in.Debug, 0, 0) // rate 0%: the caller decided
	mine := tracing.SpanID{0, 0, 0, 0, 0, 0, 0, 1}
	fmt.Println(tracing.FormatTraceparent(in.TraceID, mine, sampled))
	// Output: 00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000001-01
}
