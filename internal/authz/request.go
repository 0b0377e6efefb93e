package authz

import (
	"net/netip"
	"strings"
)

// Request holds the attributes of one inbound connection or HTTP request, as
// the proxy observed and authenticated them. The engine reads it and never
// keeps or modifies it.
type Request struct {
	// SourcePrincipal is the peer's identity from its mTLS certificate in
	// Istio's form "TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT" (a
	// "spiffe://" prefix is tolerated); empty for a plaintext peer. The
	// source namespace and trust domain are derived from it, as Istio does:
	// `namespaces` match the peer certificate, never a claim of the caller.
	SourcePrincipal string
	// SourceIP is the peer address of the connection (source.ip, ipBlocks).
	SourceIP netip.Addr
	// RemoteIP is the original client address from X-Forwarded-For or the
	// PROXY protocol (remote.ip, remoteIpBlocks); the zero value means
	// unknown, and SourceIP is used.
	RemoteIP netip.Addr
	// DestinationIP and DestinationPort are the local address the
	// connection arrived at (destination.ip, destination.port, ports).
	DestinationIP   netip.Addr
	DestinationPort uint16
	// SNI is the TLS server name the peer asked for (connection.sni).
	SNI string

	// HTTP is true for an HTTP request, false for a plain TCP connection,
	// in which case the HTTP fields below are ignored.
	HTTP bool
	// Method is the HTTP method. Istio rejects methods that are not upper
	// case, and so does Decide.
	Method string
	// Host is the request's authority (Host header or :authority), port
	// included when the client sent one.
	Host string
	// Path is the request target as received: not yet normalized, query
	// included. Decide normalizes it per Options.PathNormalization before
	// matching and denies a path that cannot be normalized safely.
	Path string
	// Headers gives access to the request headers (request.headers[...]);
	// nil means none.
	Headers Headers

	// RequestPrincipal is "ISS/SUB" of the validated JWT, empty without one
	// (requestPrincipals, request.auth.principal).
	RequestPrincipal string
	// Audiences, Presenter (azp) and Claims are from the validated JWT.
	// Claims is the decoded JSON payload: nested objects are map[string]any,
	// lists are []any or []string.
	Audiences []string
	Presenter string
	Claims    map[string]any

	// CustomVerdict is the answer of the extension provider named by
	// [Engine.Custom], when the caller asked it.
	CustomVerdict CustomVerdict
}

// CustomVerdict is an external authorizer's answer for a CUSTOM policy.
type CustomVerdict uint8

// Verdicts. CustomUnknown, the zero value, means the provider was not
// consulted (or could not be reached): a matching CUSTOM policy then denies.
const (
	CustomUnknown CustomVerdict = iota
	CustomAllow
	CustomDeny
)

// Headers gives the engine read access to request headers without copying
// them.
type Headers interface {
	// Header returns the value of the header name, given in canonical MIME
	// form ("X-Token", as net/http keys its header map), and whether the
	// header is present. Repeated headers must be returned joined with ","
	// (Istio merges duplicate headers that way before matching).
	Header(name string) (value string, ok bool)
}

// HTTPHeader adapts a net/http-style header map (canonical keys) to Headers:
// authz.HTTPHeader(req.Header). It allocates only to join repeated headers.
type HTTPHeader map[string][]string

// Header implements Headers.
func (h HTTPHeader) Header(name string) (string, bool) {
	vs, ok := h[name]
	if !ok || len(vs) == 0 {
		return "", false
	}
	if len(vs) == 1 {
		return vs[0], true
	}
	return strings.Join(vs, ","), true
}

var _ Headers = HTTPHeader(nil)
