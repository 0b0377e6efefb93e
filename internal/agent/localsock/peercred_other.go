//go:build !linux

package localsock

import "net"

// peerCred is unsupported here; Policy fails closed unless AnyUID is set.
func peerCred(*net.UnixConn) (uid, gid, pid int, err error) {
	return 0, 0, 0, ErrNoPeerCredentials
}
