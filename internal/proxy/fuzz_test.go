package proxy

import (
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/zmesh/zmesh/internal/meshtest"
	"github.com/zmesh/zmesh/internal/xds"
)

// FuzzInboundBytes sends arbitrary first bytes to a PERMISSIVE inbound
// listener, where both the protocol detection and the HTTP parser see
// them. The proxy must neither panic (net/http would recover a handler
// panic and log it, so the log is checked) nor stop serving.
func FuzzInboundBytes(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		"GET http://backend.api/../x HTTP/1.1\r\nHost: backend\r\nX-Zmesh-Source-Workload: a\r\nX-Zmesh-Source-Workload: b\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /%zz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"\x00",
	} {
		f.Add([]byte(s))
	}
	ca := meshtest.NewCA(f, testTD)
	var logs syncBuffer
	server := startProxyLog(f, ca, "api", "backend", echoApp(f), slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	mustApply(f, server, &xds.View{Version: "1", Mesh: mesh(), PeerAuthentications: parse(f, permissiveMesh)})
	addr := server.InboundAddr().String()
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.Write(data)
		c.(*net.TCPConn).CloseWrite()
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		io.Copy(io.Discard, c)
		c.Close()
		if strings.Contains(logs.String(), "panic") {
			t.Fatalf("panic in the proxy:\n%s", logs.String())
		}
	})
}
