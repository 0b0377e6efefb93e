package fdstore

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// The environment of a child given listeners: systemd's socket activation
// variables, and zmesh's store socket.
const (
	EnvListenPID   = "LISTEN_PID"
	EnvListenFDs   = "LISTEN_FDS"
	EnvListenNames = "LISTEN_FDNAMES"
	EnvStoreFD     = "ZMESH_FDSTORE_FD"
)

// firstFD is the first inherited listener's descriptor (systemd's
// SD_LISTEN_FDS_START): 0, 1 and 2 are stdin, stdout and stderr.
const firstFD = 3

// MaxListeners bounds how many listeners one process may hand over, and
// how many a Store holds for it: a proxy binds six at most.
const MaxListeners = 32

// maxName bounds a listener's name (systemd's limit for FDNAME).
const maxName = 255

// environment is what a process's environment says it was given.
type environment struct {
	names []string // the listeners' names: descriptor firstFD+i is names[i]
	store int      // the store socket's descriptor, -1 without one
}

// parseEnv reads the variables through getenv (os.Getenv); pid is this
// process's. Listeners meant for another process (LISTEN_PID set to
// another pid) are not this one's: none, and no error.
func parseEnv(getenv func(string) string, pid int) (environment, error) {
	env := environment{store: -1}
	if s := getenv(EnvStoreFD); s != "" {
		fd, err := strconv.Atoi(s)
		if err != nil || fd < firstFD || fd >= firstFD+MaxListeners+1 {
			return environment{store: -1}, fmt.Errorf("fdstore: %s=%q is not a descriptor from %d to %d", EnvStoreFD, s, firstFD, firstFD+MaxListeners)
		}
		env.store = fd
	}
	count := getenv(EnvListenFDs)
	if count == "" {
		return env, nil
	}
	if p := getenv(EnvListenPID); p != "" && p != strconv.Itoa(pid) {
		return env, nil
	}
	n, err := strconv.Atoi(count)
	if err != nil || n < 0 || n > MaxListeners {
		return environment{store: -1}, fmt.Errorf("fdstore: %s=%q is not a count from 0 to %d", EnvListenFDs, count, MaxListeners)
	}
	if env.store >= 0 && env.store < firstFD+n {
		return environment{store: -1}, fmt.Errorf("fdstore: %s=%d is one of the %d listeners", EnvStoreFD, env.store, n)
	}
	names := getenv(EnvListenNames)
	if names == "" {
		// systemd's name for a descriptor given none.
		env.names = make([]string, n)
		for i := range env.names {
			env.names[i] = "unknown"
		}
		return env, nil
	}
	env.names = strings.Split(names, ":")
	if len(env.names) != n {
		return environment{store: -1}, fmt.Errorf("fdstore: %s names %d listeners, %s says %d", EnvListenNames, len(env.names), EnvListenFDs, n)
	}
	for _, name := range env.names {
		if err := ValidName(name); err != nil {
			return environment{store: -1}, err
		}
	}
	return env, nil
}

// ValidName reports whether name can name a listener: 1 to 255 printable
// ASCII characters other than ':', LISTEN_FDNAMES's separator.
func ValidName(name string) error {
	if name == "" || len(name) > maxName {
		return fmt.Errorf("fdstore: listener name %q: 1 to %d characters", name, maxName)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c <= ' ' || c > '~' || c == ':' {
			return fmt.Errorf("fdstore: listener name %q: printable ASCII without ':' or spaces", name)
		}
	}
	return nil
}

// WithoutEnv returns env (os.Environ's form) without the variables of
// this package: a supervisor's own, if it was given any, are not its
// children's.
func WithoutEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case EnvListenPID, EnvListenFDs, EnvListenNames, EnvStoreFD:
			continue
		}
		out = append(out, kv)
	}
	return out
}

// listenEnv is the environment that gives a child names' listeners, from
// descriptor firstFD on, and the store socket after them.
func listenEnv(names []string) []string {
	return []string{
		EnvListenFDs + "=" + strconv.Itoa(len(names)),
		EnvListenNames + "=" + strings.Join(names, ":"),
		EnvStoreFD + "=" + strconv.Itoa(firstFD+len(names)),
	}
}

// sameAddr reports whether a listener bound to got serves want, a
// host:port to bind: the same port (any, when want's is 0) and the same
// IP, where an empty or unspecified host matches any unspecified address
// (Go binds ":15006" to [::], dual-stack). A host that is not an IP
// literal matches nothing: the caller binds it anew.
func sameAddr(want string, got net.Addr) bool {
	tcp, ok := got.(*net.TCPAddr)
	if !ok {
		return false
	}
	host, port, err := net.SplitHostPort(want)
	if err != nil {
		return false
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || (p != 0 && int(p) != tcp.Port) {
		return false
	}
	gotIP, ok := netip.AddrFromSlice(tcp.IP)
	if !ok {
		return false
	}
	gotIP = gotIP.Unmap()
	if host == "" {
		return gotIP.IsUnspecified()
	}
	wantIP, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	wantIP = wantIP.Unmap()
	if wantIP.IsUnspecified() {
		return gotIP.IsUnspecified()
	}
	return wantIP == gotIP
}
