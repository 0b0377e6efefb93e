package e2e

import (
	"crypto/tls"
	"net"
)

// tlsClientNoCert wraps conn in a TLS client that presents no certificate
// and trusts anything: only the server's demand for a mesh certificate can
// make its handshake fail.
func tlsClientNoCert(conn net.Conn) *tls.Conn {
	return tls.Client(conn, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12})
}
