package capture

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestDropPrivilegesHelper is not a test: TestDropPrivileges runs it in a
// child process, since dropping root cannot be undone.
func TestDropPrivilegesHelper(t *testing.T) {
	if os.Getenv("ZMESH_CAPTURE_DROP_HELPER") != "1" {
		t.Skip("helper process for TestDropPrivileges")
	}
	// The parent-death signal is per thread: read it back on the thread
	// DropPrivileges set it on.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := DropPrivileges(1337, 1338); err != nil {
		fmt.Println("error:", err)
		return
	}
	groups, _ := syscall.Getgroups()
	var pdeath int
	_ = unix.Prctl(unix.PR_GET_PDEATHSIG, uintptrOf(&pdeath), 0, 0, 0)
	// Root could change the rules again; the dropped process cannot.
	err := Apply(t.Context(), Config{})
	fmt.Printf("uid=%d euid=%d gid=%d egid=%d groups=%v pdeathsig=%d apply-refused=%v\n",
		syscall.Getuid(), syscall.Geteuid(), syscall.Getgid(), syscall.Getegid(), groups, pdeath, err != nil)
}

func TestDropPrivileges(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("dropping privileges needs root; CI runs this test as root")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestDropPrivilegesHelper$", "-test.v")
	cmd.Env = append(os.Environ(), "ZMESH_CAPTURE_DROP_HELPER=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	// The helper acts in a network namespace of its own: its Apply, were
	// the drop to fail, would touch nothing of the host.
	cmd.SysProcAttr.Unshareflags = syscall.CLONE_NEWNET
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	want := "uid=1337 euid=1337 gid=1338 egid=1338 groups=[] pdeathsig=9 apply-refused=true"
	if !strings.Contains(string(out), want) {
		t.Fatalf("helper printed:\n%s\nwant a line %q", out, want)
	}
	if err := DropPrivileges(0, 0); err == nil {
		t.Fatal("DropPrivileges(0, 0) is no drop and must be refused")
	}
}
