package localsock

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// ErrNoPeerCredentials reports a connection whose caller could not be
// identified: not a unix socket, or a platform without SO_PEERCRED.
var ErrNoPeerCredentials = errors.New("localsock: peer credentials unavailable")

// AuthInfo is the caller of a unix-socket connection, as the kernel reports
// it when the connection is accepted.
type AuthInfo struct {
	credentials.CommonAuthInfo
	UID, GID, PID int
	// Err is set when the caller could not be identified.
	Err error
}

// AuthType returns "uds".
func (AuthInfo) AuthType() string { return "uds" }

// Policy says which local callers may use a socket. The zero value admits
// only the uid of the agent's own process. A caller that cannot be
// identified is refused unless AnyUID is set.
type Policy struct {
	// UIDs lists the admitted uids; empty means the agent's own uid only.
	UIDs []int
	// AnyUID admits every caller that can open the socket, relying on the
	// socket's file mode alone; for platforms without SO_PEERCRED.
	AnyUID bool
}

// Authorize returns nil if the caller of ctx may use the socket, else a
// PermissionDenied status naming the uid.
func (p Policy) Authorize(ctx context.Context) error {
	if p.AnyUID {
		return nil
	}
	pr, ok := peer.FromContext(ctx)
	if !ok {
		return status.Error(codes.PermissionDenied, "caller unknown")
	}
	info, ok := pr.AuthInfo.(AuthInfo)
	if !ok {
		return status.Error(codes.PermissionDenied, "caller not identified (not a local socket)")
	}
	if info.Err != nil {
		return status.Error(codes.PermissionDenied, "caller not identified")
	}
	if len(p.UIDs) == 0 && info.UID == os.Getuid() || slices.Contains(p.UIDs, info.UID) {
		return nil
	}
	return status.Errorf(codes.PermissionDenied, "uid %d may not use this socket", info.UID)
}

// Credentials returns gRPC server transport credentials that record each
// caller's uid in an AuthInfo (read with peer.FromContext) and add no
// encryption: the socket never leaves the host.
func Credentials() credentials.TransportCredentials { return creds{} }

type creds struct{}

func (creds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	info := AuthInfo{CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}}
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		info.Err = ErrNoPeerCredentials
		return conn, info, nil
	}
	uid, gid, pid, err := peerCred(uc)
	if err != nil {
		info.Err = fmt.Errorf("%w: %v", ErrNoPeerCredentials, err)
		return conn, info, nil
	}
	info.UID, info.GID, info.PID = uid, gid, pid
	return conn, info, nil
}

func (creds) ClientHandshake(_ context.Context, _ string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("localsock: server-side credentials only")
}

func (creds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "uds"}
}

func (c creds) Clone() credentials.TransportCredentials { return c }

func (creds) OverrideServerName(string) error { return nil }
