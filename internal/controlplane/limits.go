package controlplane

import (
	"fmt"
	"net"
	"runtime"
	"time"

	"github.com/zmesh/zmesh/internal/connlimit"
)

// Limits bound what clients can hold of the control plane, so that one
// client opening connections by the thousand cannot take the process's
// file descriptors: CSRs from everyone else and the admin port keep being
// answered. The zero value of each field is its default.
type Limits struct {
	// PerSource is the most gRPC connections open at once from one source
	// address (an IPv6 /64). Default: a quarter of Total, at most 1024. A
	// proxy holds one connection at a time (its xDS stream; CSRs open a
	// short-lived one), so this is the number of proxies behind one
	// address, a NAT gateway's or, in `zmesh up`, 127.0.0.1's.
	PerSource int
	// Total is the most gRPC connections open at once. Default:
	// connlimit.DefaultTotal, three quarters of the open-file limit (at
	// most 16384), leaving the rest for the data dir, the admin port and
	// outgoing connections.
	Total int
	// HandshakeTimeout bounds a connection's TLS handshake and HTTP/2
	// setup; default 10s, as the proxies' listeners (gRPC's own default
	// is 120s, long enough for a few thousand silent connections to pile
	// up).
	HandshakeTimeout time.Duration
	// IdleTimeout closes a gRPC connection that has carried no RPC for
	// that long (gRPC then allows 5s for a graceful goodbye); default 10s.
	// A proxy's xDS stream is never idle, and agents dial afresh for each
	// CSR, so only connections nobody uses are cut.
	IdleTimeout time.Duration
	// Handshakes is the most TLS handshakes computing at once on the gRPC
	// port (see boundedHandshakes); default 4 per CPU, at least 8.
	Handshakes int
	// AdminPerSource and AdminTotal bound the admin port the same way;
	// defaults 16 and 64: scrapers and operators, not the mesh.
	AdminPerSource, AdminTotal int
}

func (l Limits) withDefaults() Limits {
	if l.Total == 0 {
		l.Total = connlimit.DefaultTotal()
	}
	if l.PerSource == 0 {
		l.PerSource = max(1, min(1024, l.Total/4))
	}
	if l.HandshakeTimeout == 0 {
		l.HandshakeTimeout = 10 * time.Second
	}
	if l.IdleTimeout == 0 {
		l.IdleTimeout = 10 * time.Second
	}
	if l.Handshakes == 0 {
		l.Handshakes = max(8, 4*runtime.GOMAXPROCS(0))
	}
	if l.AdminPerSource == 0 {
		l.AdminPerSource = 16
	}
	if l.AdminTotal == 0 {
		l.AdminTotal = 64
	}
	return l
}

// maxHeaderListSize bounds the headers of one gRPC request on the mesh
// port: a Kubernetes service-account token is 1-2 kB.
const maxHeaderListSize = 64 << 10

// bound wraps a listener of the control plane in its connection bounds.
func bound(lis net.Listener, name string, perSource, total int, m *connlimit.Metrics) (net.Listener, error) {
	l, err := connlimit.NewListener(lis, connlimit.Config{PerSource: perSource, Total: total, Name: name, Metrics: m})
	if err != nil {
		return nil, fmt.Errorf("controlplane: %s listener: %w", name, err)
	}
	return l, nil
}
