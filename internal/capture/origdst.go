package capture

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Socket options of netfilter's conntrack that report the destination a
// connection had before NAT (linux/netfilter_ipv4.h, netfilter_ipv6.h).
const (
	soOriginalDst     = 80 // SO_ORIGINAL_DST, level SOL_IP
	ip6tSoOriginalDst = 80 // IP6T_SO_ORIGINAL_DST, level SOL_IPV6
)

// ErrNoConntrack is returned by OriginalDst when the kernel tracks no
// state for the connection (no conntrack entry), so that nothing can say
// where it was going.
var ErrNoConntrack = errors.New("capture: original destination: connection not tracked")

// OriginalDst returns the destination a redirected TCP connection was
// opened to, before a REDIRECT (nftables redirect, iptables -j REDIRECT)
// rule sent it to this listener. c must be an accepted *net.TCPConn (or
// wrap one through SyscallConn). IPv4 connections, including those
// accepted on a dual-stack listener as v4-mapped addresses, are asked with
// SO_ORIGINAL_DST; IPv6 ones with IP6T_SO_ORIGINAL_DST.
//
// A connection made straight to the listener, not redirected, yields the
// listener's own address (conntrack reports the destination as the
// connection was opened). Callers must check for that (OriginalDst equal
// to c.LocalAddr()) and refuse it, or the proxy would dial itself in a loop.
func OriginalDst(c net.Conn) (netip.AddrPort, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("capture: original destination: %T has no file descriptor", c)
	}
	local, ok := c.LocalAddr().(*net.TCPAddr)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("capture: original destination: %T is not a TCP connection", c)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("capture: original destination: %w", err)
	}
	v4 := local.IP.To4() != nil
	var dst netip.AddrPort
	var opErr error
	if err := raw.Control(func(fd uintptr) {
		if v4 {
			dst, opErr = originalDst4(int(fd))
		} else {
			dst, opErr = originalDst6(int(fd))
		}
	}); err != nil {
		return netip.AddrPort{}, fmt.Errorf("capture: original destination: %w", err)
	}
	if opErr != nil {
		return netip.AddrPort{}, opErr
	}
	return dst, nil
}

func originalDst4(fd int) (netip.AddrPort, error) {
	var sa unix.RawSockaddrInet4
	if err := getsockopt(fd, unix.SOL_IP, soOriginalDst, unsafe.Pointer(&sa), unix.SizeofSockaddrInet4); err != nil {
		return netip.AddrPort{}, originalDstError(err)
	}
	return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), ntohs(sa.Port)), nil
}

func originalDst6(fd int) (netip.AddrPort, error) {
	var sa unix.RawSockaddrInet6
	if err := getsockopt(fd, unix.SOL_IPV6, ip6tSoOriginalDst, unsafe.Pointer(&sa), unix.SizeofSockaddrInet6); err != nil {
		return netip.AddrPort{}, originalDstError(err)
	}
	return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), ntohs(sa.Port)), nil
}

// originalDstError maps ENOENT, what conntrack answers for a connection
// it has no entry for, to ErrNoConntrack.
func originalDstError(err error) error {
	if errors.Is(err, unix.ENOENT) {
		return ErrNoConntrack
	}
	return fmt.Errorf("capture: original destination: %w", err)
}

// getsockopt reads a fixed-size socket option into p; x/sys/unix has no
// exported helper for a sockaddr-sized option.
func getsockopt(fd, level, opt int, p unsafe.Pointer, size uintptr) error {
	l := uint32(size)
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt), uintptr(p), uintptr(unsafe.Pointer(&l)), 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// ntohs turns a port as the kernel stores it (network order) into a number.
func ntohs(p uint16) uint16 {
	var b [2]byte
	binary.NativeEndian.PutUint16(b[:], p)
	return binary.BigEndian.Uint16(b[:])
}

func uintptrOf(p *int) uintptr { return uintptr(unsafe.Pointer(p)) }
