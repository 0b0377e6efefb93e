// Package http1 is the proxies' HTTP/1.1 client and server.
//
// The client serves the server proxy's hop to its app and the client
// proxy's mutual TLS hop to a server proxy:
// a RoundTripper that does a whole exchange (write the request, read the
// response, read the body) in the caller's goroutine, over a small pool of
// kept-alive connections to one address (plaintext, or made by a Dial the
// caller gives, such as the mesh's mTLS dial).
//
// net/http.Transport runs a read and a write goroutine per connection and
// hands every request and response between them and the caller; on a
// small virtual machine each hand-off is a context switch that costs more
// than the exchange itself. This package trades Transport's generality for
// a fast path with none: requests it cannot serve safely in one goroutine
// (CONNECT, Expect: 100-continue, request bodies that are large or of
// unknown length) go to a fallback RoundTripper, normally the transport it
// stands in front of. Protocol upgrades (WebSocket) are served: after a
// 101 the connection is the caller's.
//
// The server (Server) serves the proxies' listeners: each request is read,
// handled and answered in its connection's goroutine, with net/http's
// parser and checks, and without the background read that net/http's
// server starts after every request (see Server).
package http1
