package localsock

import (
	"net"
	"syscall"
)

// peerCred returns the uid, gid and pid of the process at the other end of
// c, as recorded by the kernel when it connected.
func peerCred(c *net.UnixConn) (uid, gid, pid int, err error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, 0, 0, err
	}
	var cred *syscall.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return 0, 0, 0, err
	}
	if credErr != nil {
		return 0, 0, 0, credErr
	}
	return int(cred.Uid), int(cred.Gid), int(cred.Pid), nil
}
