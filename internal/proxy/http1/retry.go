package http1

import (
	"errors"
	"net/http"

	"golang.org/x/net/http/httpguts"
)

// isReplayable reports whether req may be sent again after a connection
// failed before its response began, as http.Transport decides: its body
// can be had again, and its method is idempotent or the caller says so
// with an idempotency key.
func isReplayable(req *http.Request) bool {
	if !outgoingEmpty(req) && req.GetBody == nil {
		return false
	}
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	_, k := req.Header["Idempotency-Key"]
	_, xk := req.Header["X-Idempotency-Key"]
	return k || xk
}

// outgoingEmpty reports whether req has no body to send.
func outgoingEmpty(req *http.Request) bool {
	return req.Body == nil || req.Body == http.NoBody
}

// rewind returns req ready to be sent again: itself when it has no body,
// else a copy with a fresh body from GetBody.
func rewind(req *http.Request) (*http.Request, error) {
	if outgoingEmpty(req) {
		return req, nil
	}
	if req.GetBody == nil {
		return nil, errors.New("http1: cannot rewind request body")
	}
	b, err := req.GetBody()
	if err != nil {
		return nil, err
	}
	r2 := *req
	r2.Body = b
	return &r2, nil
}

// IsUpgrade reports whether req asks to switch protocols (Connection:
// upgrade with an Upgrade header), as WebSocket handshakes do.
func IsUpgrade(req *http.Request) bool {
	return req.Header.Get("Upgrade") != "" && httpguts.HeaderValuesContainsToken(req.Header["Connection"], "upgrade")
}
