package proxy

import (
	"io"
	"net"
	"net/http"

	"github.com/zmesh/zmesh/internal/telemetry"
)

// tunnel serves CONNECT host:port: to a mesh service, a TCP stream over
// mutual TLS to one of its endpoints (see meshTunnel); to any other host,
// a TCP tunnel straight to the target (passthrough; the bytes are opaque,
// typically the app's own TLS).
func (o *outbound) tunnel(w http.ResponseWriter, r *http.Request) {
	if st := o.p.state.Load(); st != nil {
		to, decided := o.streamRoute(st, st.routes.lookup(r.Host), r.Host, connectTarget(r.Host))
		if decided && to.rt == nil {
			writeText(w, http.StatusServiceUnavailable, bodyNoUpstream)
			return
		}
		if to.rt != nil {
			o.meshTunnel(w, r, to)
			return
		}
		if st.registryOnly {
			o.p.log.Warn("CONNECT refused: outboundTrafficPolicy is REGISTRY_ONLY and the host is not a mesh service", "target", r.Host)
			writeText(w, http.StatusBadGateway, bodyNotInRegistry)
			return
		}
	}
	target := withDefaultPort(r.Host, "443")
	if o.isSelf(target) {
		writeText(w, http.StatusLoopDetected, "loop detected")
		return
	}
	up, err := dial(r.Context(), newDialer(), target)
	if err != nil {
		o.p.log.Warn("CONNECT failed", "target", target, "err", err)
		writeText(w, http.StatusServiceUnavailable, bodyUpstreamFailed)
		return
	}
	o.relay(w, r, up, telemetry.TCPLabels{
		Reporter: telemetry.ReporterSource,
		Source:   o.self,
		Service:  stripPort(target),
		Security: telemetry.SecurityNone,
	})
}

// relay answers a CONNECT whose upstream connection up is established and
// relays bytes both ways until the stream ends or the proxy shuts down.
// It owns up.
func (o *outbound) relay(w http.ResponseWriter, r *http.Request, up net.Conn, labels telemetry.TCPLabels) {
	st := o.streams.add(up)
	if st == nil {
		writeText(w, http.StatusServiceUnavailable, bodyUpstreamFailed)
		return
	}
	defer st.end()
	defer up.Close()
	down, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		writeText(w, http.StatusNotImplemented, "CONNECT is supported over HTTP/1.1 only")
		return
	}
	defer down.Close()
	st.attach(down)

	tcp := o.p.metrics.TCPOpened(labels)
	var sent, received int64
	if _, err := io.WriteString(down, "HTTP/1.1 200 Connection established\r\n\r\n"); err == nil {
		// Bytes the client sent right behind its request.
		var early []byte
		if n := brw.Reader.Buffered(); n > 0 {
			early, _ = brw.Reader.Peek(n)
		}
		sent, received = splice(down, up, early, o.p.tcpIdle)
	}
	tcp.Closed(sent, received)
	o.p.log.Debug("CONNECT closed", "target", r.Host, "sent", sent, "received", received)
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	c.Close()
}
