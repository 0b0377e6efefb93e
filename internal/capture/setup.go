package capture

import (
	"context"
	"fmt"
	"os"
)

// Setup is what `zmesh proxy --capture` does before it runs the proxy:
// install the rules in the caller's namespace, then, when running as root,
// drop to the proxy's UID and GID for good, so that the proxy's sockets
// are the ones the rules exempt and the proxy cannot change the rules. A
// caller that is not root (a container given only CAP_NET_ADMIN) must
// already run as cfg.ProxyUID, or its own connections would be redirected
// back to it; Setup refuses to go on otherwise.
func Setup(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	euid := os.Geteuid()
	if euid != 0 && uint32(euid) != cfg.ProxyUID {
		return fmt.Errorf("capture: running as uid %d, but the rules exempt uid %d: the proxy's own traffic would loop back to it", euid, cfg.ProxyUID)
	}
	if err := Apply(ctx, cfg); err != nil {
		return err
	}
	if euid == 0 {
		return DropPrivileges(cfg.ProxyUID, cfg.ProxyGID)
	}
	return nil
}
