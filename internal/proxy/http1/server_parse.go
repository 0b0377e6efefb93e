package http1

import (
	"bufio"
	"net/http"
	_ "unsafe" // for go:linkname
)

// readRequest is net/http's request parser as its own server calls it:
// http.ReadRequest is the same parser, but it drops the Host header from
// the map, so a caller cannot tell a request that had none (which a
// server must refuse, RFC 9112 section 3.2) from an absolute-form one,
// nor check a Host header that the request line overrides. net/http
// exports it for linking and promises to keep its signature
// (go.dev/issue/67401), so the server checks exactly what net/http's does.
//
//go:linkname readRequest net/http.readRequest
func readRequest(b *bufio.Reader) (*http.Request, error)
