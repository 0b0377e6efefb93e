package capture

import (
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// parentDeathSignal is the parent-death signal the process was started
// with. The kernel keeps it per thread and only the main thread has it,
// so it is read in init, which runs there.
var parentDeathSignal int

func init() {
	_ = unix.Prctl(unix.PR_GET_PDEATHSIG, uintptrOf(&parentDeathSignal), 0, 0, 0)
}

// DropPrivileges makes the whole process run as uid and gid with no
// supplementary groups, for the proxy once its capture rules are in
// place: from then on the proxy can neither change the rules nor act as
// root, and its sockets carry the UID and GID the rules exempt. The
// parent-death signal, which the kernel clears on a change of
// credentials, is set again (on the calling thread, which is enough: the
// signal goes to the whole process), so a proxy started by `zmesh up`
// still dies with it. It cannot be undone.
func DropPrivileges(uid, gid uint32) error {
	if uid == 0 || gid == 0 {
		return fmt.Errorf("capture: drop privileges to uid %d gid %d: not a drop", uid, gid)
	}
	pdeath := parentDeathSignal
	// Groups, then GID, then UID: after the UID change nothing else may
	// change. Go applies each to every thread of the process.
	if err := syscall.Setgroups(nil); err != nil {
		return fmt.Errorf("capture: drop supplementary groups: %w", err)
	}
	if err := syscall.Setresgid(int(gid), int(gid), int(gid)); err != nil {
		return fmt.Errorf("capture: setgid %d: %w", gid, err)
	}
	if err := syscall.Setresuid(int(uid), int(uid), int(uid)); err != nil {
		return fmt.Errorf("capture: setuid %d: %w", uid, err)
	}
	if pdeath != 0 {
		if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(pdeath), 0, 0, 0); err != nil {
			return fmt.Errorf("capture: restore parent-death signal: %w", err)
		}
	}
	return nil
}
