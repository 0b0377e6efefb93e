package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zmesh/zmesh/internal/authn"
	"github.com/zmesh/zmesh/internal/authz"
	"github.com/zmesh/zmesh/internal/telemetry"
)

// TCP between proxies.
//
// An app reaches a mesh service over plain TCP by asking its outbound
// listener for a tunnel (CONNECT host:port, what HTTP_PROXY-aware clients
// do for non-HTTP traffic). The client proxy opens a mutual TLS connection
// to an endpoint's server proxy, checking the endpoint's identity as for
// HTTP, and asks with ALPN for alpnTCP instead of h2. The server proxy
// then treats the connection as one TCP stream to its app: peer
// authentication as for any connection, then authorization with the
// connection's attributes only (HTTP=false), which is where Istio's TCP
// semantics apply: an ALLOW rule that needs HTTP attributes never matches,
// and a DENY rule keeps its TCP-only parts (see package authz); a CUSTOM
// policy asks its gRPC provider about the connection. A denied
// connection is closed, as Envoy's network RBAC filter does. Each tunnel
// is its own mTLS connection: TCP streams are long-lived and cannot share
// an HTTP/2 connection's pool.

// alpnTCP is the ALPN protocol of an mTLS connection that carries one raw
// TCP stream to the server proxy's app.
const alpnTCP = "zmesh-tcp"

// The client proxy opens the stream with one line, before any byte of the
// app's, naming its workload for the server's metrics (what an HTTP
// request carries in headerSourceWorkload; Istio exchanges peer metadata
// for this). Like that header it is a label only, believed only over
// mutual TLS: identity and namespace come from the certificate.
const (
	tcpPreamble    = "zmesh-tcp/1 source-workload="
	maxPreambleLen = len(tcpPreamble) + 253 + 1
)

// readPreamble reads the client proxy's opening line and returns the
// source workload it names ("" when it names none or an invalid one) and
// the bytes of the stream read beyond it.
func readPreamble(r io.Reader) (workload string, early []byte, err error) {
	br := bufio.NewReaderSize(r, maxPreambleLen+16)
	line, err := br.ReadSlice('\n')
	if err != nil {
		return "", nil, fmt.Errorf("TCP stream preamble: %w", err)
	}
	name, ok := strings.CutPrefix(strings.TrimSuffix(string(line), "\n"), tcpPreamble)
	if !ok {
		return "", nil, errors.New("TCP stream preamble: not a zmesh-tcp/1 line")
	}
	if !validWorkloadLabel(name) {
		name = ""
	}
	if n := br.Buffered(); n > 0 {
		b, _ := br.Peek(n)
		early = bytes.Clone(b)
	}
	return name, early, nil
}

// meshTunnel serves CONNECT to a mesh service: a TCP stream to one of its
// endpoints, over mutual TLS when the endpoint has a proxy. The port of
// the CONNECT target is not used for routing: a workload serves one app
// port, which its server proxy forwards to.
func (o *outbound) meshTunnel(w http.ResponseWriter, r *http.Request, to streamDest) {
	rt := to.rt
	ep, pool := rt.pickAt(to.subset, to.portOr(requestPort(r.Host, netip.AddrPort{}, false)))
	if ep == nil || ep.refuse != "" {
		reason := "service " + rt.hostname + " has no endpoints"
		if ep != nil {
			reason = ep.refuse
		}
		o.p.log.Warn("CONNECT failed", "target", r.Host, "reason", reason)
		writeText(w, http.StatusServiceUnavailable, bodyNoUpstream)
		return
	}
	labels := telemetry.TCPLabels{
		Reporter:    telemetry.ReporterSource,
		Source:      o.self,
		Destination: telemetry.Peer{Workload: ep.workload, Namespace: ep.namespace, Principal: ep.uri},
		Service:     rt.hostname,
		Security:    telemetry.SecurityNone,
	}
	if ep.hasProxy {
		labels.Security = telemetry.SecurityMutualTLS
	}
	if !pool.acquire(r.Context()) {
		o.p.log.Warn("CONNECT refused", "target", r.Host, "reason", "connection pool of "+rt.hostname+" is full (DestinationRule connectionPool)")
		writeText(w, http.StatusServiceUnavailable, bodyOverflow)
		return
	}
	defer pool.release()
	up, err := o.dialStream(pool.withConnectTimeout(r.Context()), ep)
	if err != nil {
		ep.health.report(http.StatusServiceUnavailable)
		o.p.log.Warn("CONNECT failed", "target", r.Host, "upstream", ep.addr, "err", err)
		writeText(w, http.StatusServiceUnavailable, bodyUpstreamFailed)
		return
	}
	ep.health.report(http.StatusOK)
	o.relay(w, r, up, labels)
}

// dialStream opens a TCP stream to ep: over mutual TLS (ALPN alpnTCP,
// the server's identity checked, the preamble sent) when it has a proxy,
// over TLS when a DestinationRule originates it, plain TCP otherwise.
func (o *outbound) dialStream(ctx context.Context, ep *endpoint) (net.Conn, error) {
	if ep.origin != nil {
		return ep.origin.dial(ctx, ep.addr, nil)
	}
	if !ep.hasProxy {
		return dial(ctx, dialerFor(ctx), ep.addr)
	}
	if ep.tunnelPort != 0 {
		c, err := o.tunnels.dial(ctx, ep)
		if !errors.Is(err, errNoTunnel) {
			return c, err
		}
	}
	conf := o.p.meshClientTLS(ep.id, alpnTCP)
	up, err := o.dialMesh(ctx, ep.addr, conf, ep.id, alpnTCP)
	if err != nil {
		return nil, err
	}
	if _, err := io.WriteString(up, tcpPreamble+o.self.Workload+"\n"); err != nil {
		up.Close()
		return nil, err
	}
	return up, nil
}

// serveTCP serves an admitted mTLS connection that asked for alpnTCP: it
// authorizes the connection and, if allowed, relays it to the app until
// either side closes or ctx ends. It owns tc.
func (in *inbound) serveTCP(ctx context.Context, tc *tls.Conn) {
	defer tc.Close()
	start := time.Now()
	pr := peerFrom(in.p.connContext(ctx, tc))
	entry := telemetry.AccessEntry{Direction: "inbound", Protocol: "tcp", Peer: pr.uri}
	tc.SetReadDeadline(time.Now().Add(handshakeTimeout))
	workload, early, err := readPreamble(tc)
	if err != nil {
		entry.Flags, entry.Reason = flagDownstreamReset, err.Error()
		entry.Duration = time.Since(start)
		in.p.access.Log(ctx, &entry)
		return
	}
	tc.SetReadDeadline(time.Time{})
	in.relayTCP(ctx, tc, pr, workload, early, start, false)
}

// relayTCP authorizes a TCP stream from pr with its connection
// attributes only (Istio's TCP semantics) and, if allowed, relays it to
// the app until either side closes or ctx ends. workload is the source
// workload the client proxy named; early, bytes already read from down.
// silent says down has sent nothing yet (plaintext, past the detection
// time-out): if its first bytes come before the app's, the app's
// connection is dropped unused and they are returned (redo) to be
// detected again; otherwise they must not be HTTP (httpGuard).
func (in *inbound) relayTCP(ctx context.Context, down net.Conn, pr *peer, workload string, early []byte, start time.Time, silent bool) (redo []byte) {
	st := in.p.state.Load()
	entry := telemetry.AccessEntry{Direction: "inbound", Protocol: "tcp", Peer: pr.uri}
	log := func() {
		entry.Duration = time.Since(start)
		in.p.access.Log(ctx, &entry)
	}
	r := &authz.Request{
		SourcePrincipal: pr.principal,
		SourceIP:        pr.ip,
		DestinationIP:   pr.local.Addr(),
		DestinationPort: uint16(pr.appPort),
		SNI:             pr.sni,
	}
	if provider, ok := st.set.Custom(r); ok {
		r.CustomVerdict = in.p.extAuthz.checkConnection(ctx, st, provider, pr)
	}
	res := st.set.Request(ctx, r, authn.RequestView{}, in.p.jwks, in.p.now())
	entry.Policy, entry.Audit, entry.AuditPolicy = res.Policy, res.Authz.Audit, res.Authz.AuditPolicy
	if dr := res.Authz.DryRun; dr.Evaluated {
		entry.DryRunResult, entry.DryRunPolicy = "deny", dr.Policy
		if dr.Allow {
			entry.DryRunResult = "allow"
		}
		in.p.metrics.DryRun(dr.Policy, entry.DryRunResult)
	}
	if !res.Allow && silent {
		// A client that has said nothing yet may be a slow TLS client
		// (a proxy whose ClientHello came after the detection time-out):
		// its identity would be known only after the handshake, so its
		// first bytes are detected again rather than judged as an
		// identity-less plaintext stream.
		if client := firstBytes(down, handshakeTimeout); len(client) > 0 {
			return client
		}
	}
	if !res.Allow {
		in.p.metrics.Denied(res.Policy)
		entry.Flags, entry.Reason = flagUnauthorized, res.Reason
		log()
		return
	}

	up, err := dial(ctx, newDialer(), pr.appAddr)
	if err != nil {
		entry.Flags, entry.Reason = flagUpstreamFailure, err.Error()
		log()
		return
	}
	defer up.Close()
	stop := context.AfterFunc(ctx, func() { up.Close() })
	defer stop()
	var banner []byte
	if silent {
		var client []byte
		client, banner, err = firstSpeaker(down, up, in.p.tcpIdle)
		switch {
		case err != nil:
			entry.Flags, entry.Reason = flagDownstreamReset, err.Error()
			log()
			return nil
		case len(banner) == 0:
			return client // the client spoke first: not a server-first protocol
		}
		g := &httpGuard{Conn: down, held: client}
		down = g
	}
	entry.Upstream = pr.appAddr
	svc := ""
	if len(in.services) > 0 {
		svc = in.services[0]
	}
	security := telemetry.SecurityNone
	if pr.mtls {
		security = telemetry.SecurityMutualTLS
	}
	tcp := in.p.metrics.TCPOpened(telemetry.TCPLabels{
		Reporter:    telemetry.ReporterDestination,
		Source:      telemetry.Peer{Workload: workload, Namespace: pr.namespace, Principal: pr.uri},
		Destination: in.self,
		Service:     svc,
		Security:    security,
	})
	var sent, received int64
	if len(banner) > 0 {
		n, err := down.Write(banner)
		sent += int64(n)
		if err != nil {
			tcp.Closed(sent, 0)
			return nil
		}
	}
	out, in2 := splice(down, up, early, in.p.tcpIdle)
	sent, received = sent+out, received+in2
	tcp.Closed(sent, received)
	entry.BytesIn, entry.BytesOut = received, sent
	log()
	return nil
}

// firstBytes waits up to wait for c's first bytes and returns them (none
// if c closed or stayed silent).
func firstBytes(c net.Conn, wait time.Duration) []byte {
	c.SetReadDeadline(time.Now().Add(wait))
	defer c.SetReadDeadline(time.Time{})
	buf := make([]byte, 4096)
	n, _ := c.Read(buf)
	return buf[:n]
}

// tcpBuffers lends splice its copy buffers.
var tcpBuffers = newBufferPool()

// splice copies between down (the side that opened the stream) and up
// until both directions end, passing on each half-close. early holds
// bytes already read from down. A stream with no byte in either direction
// for idle is closed, as Envoy's tcp_proxy idle_timeout does, so that
// peers that vanished without a FIN do not hold connections forever. It
// returns the bytes sent to down and received from it.
func splice(down, up net.Conn, early []byte, idle time.Duration) (sent, received int64) {
	if len(early) > 0 {
		if _, err := up.Write(early); err != nil {
			return 0, 0
		}
		received += int64(len(early))
	}
	var last atomic.Int64 // unix nanoseconds of the last byte either way
	last.Store(time.Now().UnixNano())
	var mu sync.Mutex // orders the timer's creation before its first check
	var timer *time.Timer
	mu.Lock()
	timer = time.AfterFunc(idle, func() {
		mu.Lock()
		defer mu.Unlock()
		if quiet := time.Since(time.Unix(0, last.Load())); quiet < idle {
			timer.Reset(idle - quiet)
			return
		}
		down.Close()
		up.Close()
	})
	mu.Unlock()
	defer func() {
		mu.Lock()
		timer.Stop()
		mu.Unlock()
	}()
	pipe := func(dst, src net.Conn) int64 {
		buf := tcpBuffers.Get()
		defer tcpBuffers.Put(buf)
		var n int64
		for {
			k, err := src.Read(buf)
			if k > 0 {
				last.Store(time.Now().UnixNano())
				w, werr := dst.Write(buf[:k])
				n += int64(w)
				if werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		closeWrite(dst)
		return n
	}
	done := make(chan int64, 1)
	go func() { done <- pipe(down, up) }()
	received += pipe(up, down)
	return <-done, received
}
