package proxy

import (
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/zmesh/zmesh/internal/registry"
)

func TestPortProtocol(t *testing.T) {
	tests := []struct {
		port registry.Port
		want protocol
	}{
		{registry.Port{Name: "http"}, protoHTTP1},
		{registry.Port{Name: "http-web"}, protoHTTP1},
		{registry.Port{Name: "HTTP2-api"}, protoHTTP1},
		{registry.Port{Name: "grpc"}, protoHTTP1},
		{registry.Port{Name: "grpc-web"}, protoHTTP1},
		{registry.Port{Name: "grpc-web-ui"}, protoHTTP1},
		{registry.Port{Name: "https"}, protoTLS},
		{registry.Port{Name: "tls-passthrough"}, protoTLS},
		{registry.Port{Name: "tcp"}, protoTCP},
		{registry.Port{Name: "mysql"}, protoTCP},
		{registry.Port{Name: "mongo-primary"}, protoTCP},
		{registry.Port{Name: "redis"}, protoTCP},
		{registry.Port{Name: "web"}, protoUnknown},
		{registry.Port{Name: "httpx"}, protoUnknown},
		{registry.Port{}, protoUnknown},
		{registry.Port{Name: "http", Protocol: "TCP"}, protoTCP}, // the declared protocol wins over the name
		{registry.Port{Name: "db", Protocol: "HTTP"}, protoHTTP1},
		{registry.Port{Name: "db", Protocol: "GRPC"}, protoHTTP1},
		{registry.Port{Name: "db", Protocol: "TLS"}, protoTLS},
		{registry.Port{Name: "db", Protocol: "MYSQL"}, protoTCP},
		{registry.Port{Name: "db", Protocol: "UDP"}, protoUnknown},
	}
	for _, tt := range tests {
		if got := portProtocol(tt.port); got != tt.want {
			t.Errorf("portProtocol(%+v) = %v, want %v", tt.port, got, tt.want)
		}
	}
}

// clientHello returns the first flight of a real TLS client asking for
// serverName.
func clientHello(t testing.TB, serverName string) []byte {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go func() {
		c := tls.Client(a, &tls.Config{ServerName: serverName, InsecureSkipVerify: true})
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Handshake()
	}()
	buf := make([]byte, 64<<10)
	n := 0
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		k, err := b.Read(buf[n:])
		n += k
		if p, _ := sniff(buf[:n], false); p != protoUnknown || err != nil {
			return buf[:n]
		}
	}
}

func TestSniff(t *testing.T) {
	hello := clientHello(t, "db.Example.com")
	// The same ClientHello split in two records.
	hs := hello[5:]
	split := append([]byte{0x16, 3, 1, 0, 10}, hs[:10]...)
	split = append(split, 0x16, 3, 1, byte((len(hs)-10)>>8), byte(len(hs)-10))
	split = append(split, hs[10:]...)

	tests := []struct {
		name    string
		in      string
		final   bool
		want    protocol
		wantSNI string
	}{
		{name: "HTTP/1.1 request line", in: "GET /x HTTP/1.1\r\nHost: a\r\n\r\n", want: protoHTTP1},
		{name: "HTTP/1.0 request line", in: "POST / HTTP/1.0\r\n", want: protoHTTP1},
		{name: "the version's first bytes suffice", in: "DELETE /a?b=c HTTP/", want: protoHTTP1},
		{name: "an extension method", in: "PROPFIND /dav HTTP/1.1\r\n", want: protoHTTP1},
		{name: "an unfinished request line waits", in: "GET /some/pa", want: protoUnknown},
		{name: "an unfinished request line, final, is HTTP (the server judges it)", in: "GET /some/pa", final: true, want: protoHTTP1},
		{name: "HTTP/2 preface", in: h2Preface, want: protoHTTP2},
		{name: "part of the HTTP/2 preface waits", in: "PRI * HTT", want: protoUnknown},
		{name: "a MySQL-style client greeting is TCP", in: "\x20\x00\x00\x01\x85\xa6", want: protoTCP},
		{name: "a Redis command is TCP", in: "*1\r\n$4\r\nPING\r\n", want: protoTCP},
		{name: "an inline Redis command is TCP", in: "SET k v\r\n", want: protoTCP},
		{name: "SMTP is TCP", in: "EHLO mail.example.com\r\n", want: protoTCP},
		{name: "a word then a line end is TCP", in: "PING\r\n", want: protoTCP},
		{name: "two spaces is TCP", in: "GET  / HTTP/1.1\r\n", want: protoTCP},
		{name: "a control character in the target is TCP", in: "GET /\x01 HTTP/1.1\r\n", want: protoTCP},
		{name: "no bytes yet", in: "", want: protoUnknown},
		{name: "no bytes at all, final: a server-first protocol", in: "", final: true, want: protoTCP},
		{name: "a TLS ClientHello with SNI", in: string(hello), want: protoTLS, wantSNI: "db.example.com"},
		{name: "a ClientHello over two records", in: string(split), want: protoTLS, wantSNI: "db.example.com"},
		{name: "a ClientHello cut short waits", in: string(hello[:len(hello)-3]), want: protoUnknown},
		{name: "a ClientHello cut short, final, is TCP", in: string(hello[:len(hello)-3]), final: true, want: protoTCP},
		{name: "a TLS record that is not a ClientHello is TCP", in: "\x16\x03\x03\x00\x04\x02\x00\x00\x00", want: protoTCP},
		{name: "a handshake byte then garbage is TCP", in: "\x16\x00\x00\x00\x00", want: protoTCP},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, sni := sniff([]byte(tt.in), tt.final)
			if got != tt.want || sni != tt.wantSNI {
				t.Fatalf("sniff = %v %q, want %v %q", got, sni, tt.want, tt.wantSNI)
			}
		})
	}
}

func TestSniffTLSWithoutSNI(t *testing.T) {
	hello := clientHello(t, "")
	if p, sni := sniff(hello, false); p != protoTLS || sni != "" {
		t.Fatalf("sniff = %v %q", p, sni)
	}
}

// FuzzSniff: any bytes, cut anywhere, get an answer without a panic;
// given more bytes, a decided answer does not change, and a final
// answer is never unknown.
func FuzzSniff(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\n", h2Preface, "\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00", "SET k v\r\n", "",
		string(clientHello(f, "a.b")),
	} {
		f.Add([]byte(s), uint16(3))
	}
	f.Fuzz(func(t *testing.T, b []byte, cut uint16) {
		k := min(int(cut), len(b))
		p1, sni1 := sniff(b[:k], false)
		p2, sni2 := sniff(b, false)
		if p1 != protoUnknown && (p1 != p2 || sni1 != sni2) && len(b) <= maxSniff {
			t.Fatalf("decided %v %q on %d bytes, %v %q on %d", p1, sni1, k, p2, sni2, len(b))
		}
		if p, _ := sniff(b, true); p == protoUnknown {
			t.Fatalf("final answer unknown for %q", b)
		}
		if len(sni2) > 253 {
			t.Fatalf("server name of %d bytes", len(sni2))
		}
	})
}
