package proxy

import (
	"bytes"
	"strings"

	"golang.org/x/crypto/cryptobyte"

	"github.com/zmesh/zmesh/internal/registry"
)

// protocol is what a connection speaks, as far as the proxy cares: which
// of its paths serves it.
type protocol uint8

const (
	// protoUnknown: the bytes seen so far could still be more than one
	// thing; read more.
	protoUnknown protocol = iota
	// protoTCP is opaque bytes: relayed as a stream, never parsed.
	protoTCP
	// protoHTTP1 is an HTTP/1.x request line.
	protoHTTP1
	// protoHTTP2 is the HTTP/2 connection preface (prior knowledge).
	protoHTTP2
	// protoTLS is a TLS ClientHello: the app's own TLS, passed through.
	protoTLS
)

func (p protocol) String() string {
	switch p {
	case protoTCP:
		return "tcp"
	case protoHTTP1:
		return "http/1.1"
	case protoHTTP2:
		return "h2c"
	case protoTLS:
		return "tls"
	}
	return "unknown"
}

func (p protocol) isHTTP() bool { return p == protoHTTP1 || p == protoHTTP2 }

// portProtocol is Istio's explicit protocol selection for a service port:
// its declared protocol (a ServiceEntry port's protocol, a Kubernetes
// appProtocol), else the prefix of its name ("http-web", "grpc",
// "tcp-db"). HTTP, HTTP2, gRPC and gRPC-Web are HTTP; HTTPS and TLS are
// the app's own TLS; TCP, and the protocols Istio carries as TCP (Mongo,
// MySQL, Redis) are opaque. protoUnknown: not declared, to be detected.
func portProtocol(p registry.Port) protocol {
	name := p.Protocol
	if name == "" {
		name = p.Name
		if name != "grpc-web" && !strings.HasPrefix(strings.ToLower(name), "grpc-web-") {
			name, _, _ = strings.Cut(name, "-")
		} else {
			name = "grpc-web"
		}
	}
	switch strings.ToLower(name) {
	case "http", "http2", "grpc", "grpc-web":
		return protoHTTP1 // HTTP/1.x or HTTP/2: the HTTP server tells them apart
	case "https", "tls":
		return protoTLS
	case "tcp", "mongo", "mysql", "redis":
		return protoTCP
	}
	return protoUnknown
}

// maxSniff bounds how much of a connection the proxy reads to detect its
// protocol: an HTTP request line or a TLS ClientHello (a few KiB, with
// post-quantum key shares) fits well within.
const maxSniff = 16 << 10

// h2Preface is the HTTP/2 client connection preface.
const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// sniff detects the protocol of a connection from its first bytes b, as
// Envoy's http_inspector and tls_inspector do, and for TLS the server name
// the ClientHello asks for. It returns protoUnknown when more bytes could
// change the answer, unless final (no more bytes will be waited for:
// detection timed out, or maxSniff bytes were read), where an unfinished
// HTTP request line counts as HTTP (the HTTP server then answers or times
// it out) and anything else as TCP. No bytes at all, final, is TCP: a
// server-first protocol, whose client waits for the server's banner.
//
// sniff never fails: input that is neither HTTP nor TLS is TCP. It reads
// at most maxSniff bytes of b.
func sniff(b []byte, final bool) (protocol, string) {
	if len(b) > maxSniff {
		b, final = b[:maxSniff], true
	}
	if len(b) == 0 {
		if final {
			return protoTCP, ""
		}
		return protoUnknown, ""
	}
	if b[0] == recordTypeHandshake {
		p, sni := sniffTLS(b)
		if p == protoUnknown && final {
			return protoTCP, ""
		}
		return p, sni
	}
	p := sniffHTTP(b)
	if p == protoUnknown && final {
		return protoHTTP1, ""
	}
	return p, ""
}

// sniffHTTP recognizes an HTTP/1.x request line (method SP target SP
// HTTP/...) or the HTTP/2 preface.
func sniffHTTP(b []byte) protocol {
	if n := min(len(b), len(h2Preface)); string(b[:n]) == h2Preface[:n] {
		if n == len(h2Preface) {
			return protoHTTP2
		}
		return protoUnknown
	}
	// Method: one or more token characters.
	i := 0
	for i < len(b) && isTokenChar(b[i]) {
		i++
	}
	if i == len(b) {
		return protoUnknown
	}
	if i == 0 || b[i] != ' ' {
		return protoTCP
	}
	i++
	// Target: visible characters.
	start := i
	for i < len(b) && b[i] > ' ' && b[i] < 0x7f {
		i++
	}
	if i == len(b) {
		return protoUnknown
	}
	if i == start || b[i] != ' ' {
		return protoTCP
	}
	i++
	// Version: "HTTP/" then the server decides what it accepts.
	rest := b[i:]
	const version = "HTTP/"
	if n := min(len(rest), len(version)); !bytes.Equal(rest[:n], []byte(version[:n])) {
		return protoTCP
	}
	if len(rest) < len(version) {
		return protoUnknown
	}
	return protoHTTP1
}

// isTokenChar reports whether c may appear in an HTTP token (RFC 9110).
func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// sniffTLS recognizes a TLS ClientHello, reassembling it from the
// handshake records it spans, and returns the server name it carries ("",
// none or a malformed one). b starts with a handshake record.
func sniffTLS(b []byte) (protocol, string) {
	var hs []byte // the handshake messages' bytes so far
	for rest := b; ; {
		if len(rest) < 5 {
			return protoUnknown, ""
		}
		if rest[0] != recordTypeHandshake || rest[1] != 3 {
			if len(hs) == 0 {
				return protoTCP, ""
			}
			return protoTLS, "" // a ClientHello cut short by another record
		}
		n := int(rest[3])<<8 | int(rest[4])
		if n == 0 || n > 1<<14 {
			return protoTCP, ""
		}
		if len(rest) < 5+n {
			return protoUnknown, ""
		}
		hs = append(hs, rest[5:5+n]...)
		rest = rest[5+n:]
		if len(hs) >= 4 {
			if hs[0] != 1 { // not a ClientHello
				return protoTCP, ""
			}
			if m := int(hs[1])<<16 | int(hs[2])<<8 | int(hs[3]); len(hs) >= 4+m {
				return protoTLS, serverName(hs[4 : 4+m])
			}
		}
	}
}

// serverName returns the host_name of the server_name extension of a
// ClientHello body, "" when it has none or is malformed.
func serverName(hello []byte) string {
	s := cryptobyte.String(hello)
	var random, sessionID, suites, compression, exts cryptobyte.String
	var version uint16
	if !s.ReadUint16(&version) || !s.ReadBytes((*[]byte)(&random), 32) ||
		!s.ReadUint8LengthPrefixed(&sessionID) || !s.ReadUint16LengthPrefixed(&suites) ||
		!s.ReadUint8LengthPrefixed(&compression) || !s.ReadUint16LengthPrefixed(&exts) {
		return ""
	}
	for !exts.Empty() {
		var typ uint16
		var body cryptobyte.String
		if !exts.ReadUint16(&typ) || !exts.ReadUint16LengthPrefixed(&body) {
			return ""
		}
		if typ != 0 { // server_name
			continue
		}
		var list cryptobyte.String
		if !body.ReadUint16LengthPrefixed(&list) {
			return ""
		}
		for !list.Empty() {
			var nameType uint8
			var name cryptobyte.String
			if !list.ReadUint8(&nameType) || !list.ReadUint16LengthPrefixed(&name) {
				return ""
			}
			if nameType == 0 && validSNI(name) {
				return strings.ToLower(string(name))
			}
		}
		return ""
	}
	return ""
}

// validSNI accepts what a DNS host name may hold, so that routing and logs
// see nothing else.
func validSNI(name []byte) bool {
	if len(name) == 0 || len(name) > 253 {
		return false
	}
	for _, c := range name {
		if !(c == '-' || c == '.' || c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}
