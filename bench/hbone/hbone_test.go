// Package hbone measures the two ways two proxies can carry an app's TCP
// connections over mutual TLS (issue 11, "HBONE"):
//
//   - per connection, as zmesh's data plane does today for opaque TCP
//     (the mTLS TCP stream, ALPN zmesh-tcp): each app connection gets its
//     own TCP connection and TLS 1.3 handshake between the proxies;
//   - multiplexed, as Istio's HBONE: one mTLS connection between the
//     proxies speaking HTTP/2, each app connection a CONNECT stream on it.
//
// Both sides use the mesh's kind of identity (ECDSA P-256 certificates
// with SPIFFE URIs from a test CA, verified against the trust bundle with
// the peer's expected URI checked, as secure naming does), and the server
// side of both dials the app (a TCP echo on loopback) per app connection,
// so the difference is the transport between the proxies. Nothing here is
// on zmesh's data path: it is a measurement to decide whether HBONE is
// worth building (docs/benchmarks.md).
//
//	go test -run '^$' -bench . -benchmem ./bench/hbone
package hbone

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/zmesh/zmesh/internal/meshtest"
)

const (
	clientID = "spiffe://cluster.local/ns/bench/sa/client"
	serverID = "spiffe://cluster.local/ns/bench/sa/server"
)

// peerVerifier checks the peer's chain against pool and its URI against
// want, as the proxies' secure naming does (SPIFFE certificates carry no
// DNS name to verify).
func peerVerifier(pool *x509.CertPool, want string) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("no peer certificate")
		}
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		leaf := cs.PeerCertificates[0]
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			return err
		}
		for _, u := range leaf.URIs {
			if u.String() == want {
				return nil
			}
		}
		return fmt.Errorf("peer is not %s", want)
	}
}

// pair is a client and a server proxy's TLS configurations, the server's
// listener, and the app behind it.
type pair struct {
	client, server *tls.Config
	ln             net.Listener
	app            string
	handshakes     atomic.Int64 // completed by the server
	wg             sync.WaitGroup
}

func newPair(b testing.TB, alpn string) *pair {
	b.Helper()
	ca := meshtest.NewCA(b, "cluster.local")
	cc, sc := ca.IssueURI(b, clientID, time.Hour), ca.IssueURI(b, serverID, time.Hour)
	p := &pair{
		client: &tls.Config{
			MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cc}, NextProtos: []string{alpn},
			InsecureSkipVerify: true, // verified by VerifyConnection: SPIFFE URI, not a host name
			VerifyConnection:   peerVerifier(ca.Pool(), serverID),
		},
		server: &tls.Config{
			MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{sc}, NextProtos: []string{alpn},
			ClientAuth:       tls.RequireAnyClientCert, // verified by VerifyConnection
			VerifyConnection: peerVerifier(ca.Pool(), clientID),
		},
	}
	p.app = echoApp(b)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	p.ln = ln
	b.Cleanup(func() { ln.Close(); p.wg.Wait() })
	return p
}

// echoApp is the server side's app: a TCP echo on loopback.
func echoApp(b testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	b.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			})
		}
	})
	return ln.Addr().String()
}

// relay copies both ways between a and the app connection up, closing
// the write side of each when the other's read side ends.
func relay(a io.ReadWriter, closeA func(), up *net.TCPConn) {
	var wg sync.WaitGroup
	wg.Go(func() {
		_, _ = io.Copy(up, a)
		_ = up.CloseWrite()
	})
	_, _ = io.Copy(a, up)
	closeA()
	wg.Wait()
}

// servePerConn is the server proxy of the per-connection transport: each
// accepted connection is one app connection.
func (p *pair) servePerConn() {
	p.wg.Go(func() {
		for {
			c, err := p.ln.Accept()
			if err != nil {
				return
			}
			p.wg.Go(func() {
				defer c.Close()
				tc := tls.Server(c, p.server)
				if err := tc.Handshake(); err != nil {
					return
				}
				p.handshakes.Add(1)
				up, err := net.Dial("tcp", p.app)
				if err != nil {
					return
				}
				defer up.Close()
				relay(tc, func() { _ = tc.CloseWrite() }, up.(*net.TCPConn))
			})
		}
	})
}

// dialPerConn opens one app connection: a TCP connection and an mTLS
// handshake.
func (p *pair) dialPerConn() (io.ReadWriteCloser, func(), error) {
	c, err := net.Dial("tcp", p.ln.Addr().String())
	if err != nil {
		return nil, nil, err
	}
	tc := tls.Client(c, p.client)
	if err := tc.Handshake(); err != nil {
		c.Close()
		return nil, nil, err
	}
	return tc, func() { _ = tc.CloseWrite() }, nil
}

// serveHBONE is the server proxy of the multiplexed transport: HTTP/2
// over mTLS, each CONNECT stream one app connection to its :authority
// (here always the app).
func (p *pair) serveHBONE() {
	h2 := &http2.Server{}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
			return
		}
		up, err := net.Dial("tcp", p.app)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer up.Close()
		w.WriteHeader(http.StatusOK)
		rc := http.NewResponseController(w)
		_ = rc.Flush()
		relay(&streamRW{r: r.Body, w: w, rc: rc}, func() {}, up.(*net.TCPConn))
	})
	p.wg.Go(func() {
		for {
			c, err := p.ln.Accept()
			if err != nil {
				return
			}
			p.wg.Go(func() {
				defer c.Close()
				tc := tls.Server(c, p.server)
				if err := tc.Handshake(); err != nil {
					return
				}
				p.handshakes.Add(1)
				h2.ServeConn(tc, &http2.ServeConnOpts{Handler: handler})
			})
		}
	})
}

// streamRW is a CONNECT stream on the server side: reads from the request
// body, writes flushed to the response.
type streamRW struct {
	r  io.Reader
	w  io.Writer
	rc *http.ResponseController
}

func (s *streamRW) Read(b []byte) (int, error) { return s.r.Read(b) }
func (s *streamRW) Write(b []byte) (int, error) {
	n, err := s.w.Write(b)
	if err == nil {
		err = s.rc.Flush()
	}
	return n, err
}

// hboneClient is the client proxy of the multiplexed transport: one mTLS
// connection, HTTP/2, a CONNECT stream per app connection.
type hboneClient struct {
	cc *http2.ClientConn
}

func (p *pair) newHBONEClient(b testing.TB) *hboneClient {
	b.Helper()
	c, err := net.Dial("tcp", p.ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	tc := tls.Client(c, p.client)
	if err := tc.Handshake(); err != nil {
		b.Fatal(err)
	}
	tr := &http2.Transport{}
	cc, err := tr.NewClientConn(tc)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cc.Close() })
	return &hboneClient{cc: cc}
}

// stream is one app connection carried as a CONNECT stream.
type stream struct {
	pw   *io.PipeWriter
	body io.ReadCloser
}

func (s *stream) Read(b []byte) (int, error)  { return s.body.Read(b) }
func (s *stream) Write(b []byte) (int, error) { return s.pw.Write(b) }
func (s *stream) Close() error {
	s.pw.Close()
	return s.body.Close()
}

func (h *hboneClient) dial(ctx context.Context, target string) (io.ReadWriteCloser, func(), error) {
	pr, pw := io.Pipe()
	req, err := http.NewRequestWithContext(ctx, http.MethodConnect, "https://"+target, pr)
	if err != nil {
		return nil, nil, err
	}
	req.Host = target
	resp, err := h.cc.RoundTrip(req)
	if err != nil {
		pw.Close()
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		pw.Close()
		return nil, nil, fmt.Errorf("CONNECT %s: %s", target, resp.Status)
	}
	s := &stream{pw: pw, body: resp.Body}
	return s, func() { pw.Close() }, nil
}

// exchange is one short app connection: send msg, read it back, half-close
// and wait for the end of the stream, as a request/response client does.
func exchange(c io.ReadWriteCloser, closeWrite func(), msg []byte) error {
	defer c.Close()
	var wg sync.WaitGroup
	var werr error
	wg.Go(func() {
		_, werr = c.Write(msg)
		closeWrite()
	})
	got, err := io.ReadAll(bufio.NewReader(c))
	wg.Wait()
	if werr != nil {
		return werr
	}
	if err != nil {
		return err
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("echoed %d bytes, want %d", len(got), len(msg))
	}
	return nil
}

func payload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

// sizes: a short request/response connection, and a bulk transfer.
var sizes = []struct {
	name string
	n    int
}{{"1KiB", 1 << 10}, {"1MiB", 1 << 20}}

// BenchmarkPerConnectionMTLS opens each app connection as its own TCP
// connection and mTLS handshake between the proxies.
func BenchmarkPerConnectionMTLS(b *testing.B) {
	for _, sz := range sizes {
		msg := payload(sz.n)
		run := func(b *testing.B, parallel bool) {
			p := newPair(b, "zmesh-tcp")
			p.servePerConn()
			one := func() error {
				c, cw, err := p.dialPerConn()
				if err != nil {
					return err
				}
				return exchange(c, cw, msg)
			}
			b.SetBytes(int64(sz.n))
			b.ReportAllocs()
			b.ResetTimer()
			loop(b, parallel, one)
			b.StopTimer()
			b.ReportMetric(float64(p.handshakes.Load())/float64(b.N), "handshakes/op")
		}
		b.Run(sz.name, func(b *testing.B) { run(b, false) })
		b.Run(sz.name+"/parallel", func(b *testing.B) { run(b, true) })
	}
}

// BenchmarkHBONE carries each app connection as an HTTP/2 CONNECT stream
// on one mTLS connection between the proxies, opened before the timer.
func BenchmarkHBONE(b *testing.B) {
	for _, sz := range sizes {
		msg := payload(sz.n)
		run := func(b *testing.B, parallel bool) {
			p := newPair(b, "h2")
			p.serveHBONE()
			h := p.newHBONEClient(b)
			ctx := context.Background()
			one := func() error {
				c, cw, err := h.dial(ctx, p.app)
				if err != nil {
					return err
				}
				return exchange(c, cw, msg)
			}
			b.SetBytes(int64(sz.n))
			b.ReportAllocs()
			b.ResetTimer()
			loop(b, parallel, one)
			b.StopTimer()
			b.ReportMetric(float64(p.handshakes.Load())/float64(b.N), "handshakes/op")
		}
		b.Run(sz.name, func(b *testing.B) { run(b, false) })
		b.Run(sz.name+"/parallel", func(b *testing.B) { run(b, true) })
	}
}

func loop(b *testing.B, parallel bool, one func() error) {
	if !parallel {
		for b.Loop() {
			if err := one(); err != nil {
				b.Fatal(err)
			}
		}
		return
	}
	b.SetParallelism(4) // 4×GOMAXPROCS app connections at once
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := one(); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// TestTransportsCarryBytes checks both transports once, so that a broken
// benchmark fails `go test` rather than measuring nothing: the bytes come
// back, the multiplexed transport handshakes once for many connections,
// and a client with another identity is refused by both.
func TestTransportsCarryBytes(t *testing.T) {
	msg := payload(64 << 10)
	t.Run("per connection", func(t *testing.T) {
		p := newPair(t, "zmesh-tcp")
		p.servePerConn()
		for range 3 {
			c, cw, err := p.dialPerConn()
			if err != nil {
				t.Fatal(err)
			}
			if err := exchange(c, cw, msg); err != nil {
				t.Fatal(err)
			}
		}
		if n := p.handshakes.Load(); n != 3 {
			t.Errorf("%d handshakes for 3 connections, want 3", n)
		}
	})
	t.Run("HBONE", func(t *testing.T) {
		p := newPair(t, "h2")
		p.serveHBONE()
		h := p.newHBONEClient(t)
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for range 8 {
			wg.Go(func() {
				c, cw, err := h.dial(context.Background(), p.app)
				if err == nil {
					err = exchange(c, cw, msg)
				}
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		if n := p.handshakes.Load(); n != 1 {
			t.Errorf("%d handshakes for 8 streams, want 1", n)
		}
	})
	t.Run("another identity is refused", func(t *testing.T) {
		for _, alpn := range []string{"zmesh-tcp", "h2"} {
			p := newPair(t, alpn)
			if alpn == "h2" {
				p.serveHBONE()
			} else {
				p.servePerConn()
			}
			stranger := meshtest.NewCA(t, "cluster.local").IssueURI(t, clientID, time.Hour) // right URI, wrong CA
			cfg := p.client.Clone()
			cfg.Certificates = []tls.Certificate{stranger}
			c, err := tls.Dial("tcp", p.ln.Addr().String(), cfg)
			if err == nil {
				// TLS 1.3: the server's verdict on the client certificate
				// arrives with the first read.
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				_, err = c.Read(make([]byte, 1))
				c.Close()
			}
			if err == nil || p.handshakes.Load() != 0 {
				t.Errorf("%s: a client certificate from another CA was accepted (%v)", alpn, err)
			}
		}
	})
}
