package proxy

import (
	"context"
	"errors"
	"net/http"
	"net/http/httputil"

	vroute "github.com/zmesh/zmesh/internal/route"
)

// attempt is the ResponseWriter of one try of a request with retries: it
// holds the response headers back until it knows whether the response is
// the caller's or is swallowed for a retry.
type attempt struct {
	rec   *recorder
	h     http.Header
	last  bool
	retry *vroute.Retry
	resp  [2]*vroute.HeaderOp
	// swallowed: this try's response (or failure) is dropped and the
	// request tried again.
	swallowed bool
	committed bool
	err       error
	connect   bool
	// code is the try's final status, for outlier detection.
	code int
}

// Header is the attempt's own header map until the response is the
// caller's, then the caller's: trailers (gRPC's status) are written to it
// after the body.
func (a *attempt) Header() http.Header {
	if a.committed {
		return a.rec.Header()
	}
	return a.h
}

func (a *attempt) WriteHeader(code int) {
	if a.committed || a.swallowed {
		return
	}
	if code < 200 && code != http.StatusSwitchingProtocols {
		return // informational: the final response follows
	}
	a.code = code
	if !a.last && a.retry.Retriable(code, false, a.h.Get("Grpc-Status")) {
		a.swallowed = true
		return
	}
	a.commit(code)
}

func (a *attempt) commit(code int) {
	a.committed = true
	dst := a.rec.Header()
	for k, v := range a.h {
		dst[k] = v
	}
	for _, op := range a.resp {
		op.Apply(dst)
	}
	a.rec.WriteHeader(code)
}

func (a *attempt) Write(b []byte) (int, error) {
	if a.swallowed {
		return len(b), nil
	}
	if !a.committed {
		a.WriteHeader(http.StatusOK)
		if a.swallowed {
			return len(b), nil
		}
	}
	return a.rec.Write(b)
}

func (a *attempt) Flush() {
	if a.committed {
		a.rec.Flush()
	}
}

// Unwrap lets http.ResponseController reach the recorder.
func (a *attempt) Unwrap() http.ResponseWriter { return a.rec }

// failed records a try that got no response: swallowed for a retry when
// the policy allows, else answered as route answers failures.
func (a *attempt) failed(r *http.Request, err error) {
	var de *dialError
	a.err, a.connect = err, errors.As(err, &de)
	if !a.last && a.retry.Retriable(0, a.connect, "") {
		a.swallowed = true
	}
}

// finish answers the caller when the try failed without a response and
// is not retried: the caller went away (499), the route's time-out (504)
// or the per-try time-out on the last try (504), or an upstream failure
// (503).
func (a *attempt) finish(caller, route context.Context) {
	if a.err == nil || a.swallowed || a.committed {
		return
	}
	switch {
	case caller.Err() != nil:
		a.rec.fail(flagDownstreamReset, a.err)
		a.rec.WriteHeader(499)
	case route.Err() != nil || errors.Is(a.err, context.DeadlineExceeded):
		a.rec.fail(flagUpstreamTimeout, a.err)
		writeText(a.rec, http.StatusGatewayTimeout, "upstream request timeout")
	default:
		a.rec.fail(flagUpstreamFailure, a.err)
		writeText(a.rec, http.StatusServiceUnavailable, bodyUpstreamFailed)
	}
}

// newVirtualReverseProxy is newReverseProxy for VirtualService routes:
// failures are left to the attempt, which may retry them.
func newVirtualReverseProxy(o *outbound) *httputil.ReverseProxy {
	rp := newReverseProxy(o, o.p.log)
	rp.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		if a, ok := w.(*attempt); ok {
			a.failed(r, err)
		}
	}
	return rp
}
